"""The localizer's network: one convolutional backbone, a class head and a box head.

Input: ``(B, 3, S, S)`` float32, the image stretched to a square and normalised (see
:mod:`labeler_localizer.boxes`). Output: a dict of tensors

- ``"logits"`` ``(B, C)``: class logits (softmax gives the class probabilities);
- ``"box"`` ``(B, 4)``: normalised ``(x, y, w, h)`` of the object (top-left corner, width,
  height, fractions of the image's width and height), each in ``(0, 1)`` through a sigmoid;
- in evaluation mode with test-time flipping on, also ``"agreement"`` ``(B,)``: IoU of the boxes
  predicted on the image and on its mirror image (1 = the two views agree), used for uncertainty.

Two box heads (setting ``box_head``), both trained on ``(x, y, w, h)`` by mean squared error:

- ``"edges"`` (the default): the box's four sides are read off the feature maps where they are.
  The ``S/8`` features, joined with the ``S/16`` ones upsampled, give one score map per side
  (left, top, right, bottom); each map is pooled across the side's direction (log-sum-exp: the
  side's evidence anywhere along it) into scores over the ``S/8`` positions, a learned bias per
  position is added (it starts as a prior around the centred box below), and the expectation
  under their softmax is the side's coordinate (sub-cell, between 0 and 1). Then ``x = left``,
  ``w = right - left``, and likewise for ``y`` and ``h``. A side found in one place of an image
  is found in any other place by the same convolutions, so it learns from few images what the
  fully connected head must learn for every position apart.
- ``"dense"``: the ``S/16 x S/16`` feature map is squeezed by a 1x1 convolution and flattened into
  fully connected layers (position is not averaged away); its last layer starts at zero weight
  with a bias that encodes the prior box. Versions made before the setting existed use it.

Both start from a prior box (centred, 60 % of the image) and learn offsets from it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

PRIOR_BOX = (0.2, 0.2, 0.6, 0.6)
"""Normalised ``(x, y, w, h)`` the box head outputs before training."""


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Localizer(nn.Module):
    """Backbone plus class head plus box head; see the module docstring for shapes.

    ``width`` is the channel count of the first stage (later stages have 2x, 4x, 6x).
    ``input_size`` must be a multiple of 16.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        input_size: int = 96,
        width: int = 16,
        dropout: float = 0.2,
        tta_flip: bool = True,
        box_head: str = "edges",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("the localizer needs at least one class")
        if input_size % 16 or input_size < 32:
            raise ValueError(f"input_size must be a multiple of 16 and at least 32, got {input_size}")
        if box_head not in BOX_HEADS:
            raise ValueError(f"box_head must be one of {', '.join(BOX_HEADS)}, got {box_head!r}")
        c1, c2, c3, c4 = width, 2 * width, 4 * width, 6 * width
        self.num_classes = num_classes
        self.input_size = input_size
        self.tta_flip = tta_flip
        self.backbone = nn.Sequential(
            _conv(3, c1, stride=2),  # S/2
            _conv(c1, c1),
            _conv(c1, c2, stride=2),  # S/4
            _conv(c2, c2),
            _conv(c2, c3, stride=2),  # S/8
            _conv(c3, c3),
            _conv(c3, c4, stride=2),  # S/16
            _conv(c4, c4),
        )
        self.class_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c4, num_classes))
        self.box_head: nn.Module = (
            EdgeBoxHead(c3, c4, input_size // 8)
            if box_head == "edges"
            else _dense_box_head(c4, input_size // 16, dropout)
        )
        # NHWC convolutions run markedly faster on CPU here; checkpoints store contiguous copies
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit this keyword of Module.to

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        fine = self.backbone[:6](x)  # S/8
        features = self.backbone[6:](fine)  # S/16
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        if isinstance(self.box_head, EdgeBoxHead):
            return self.class_head(pooled), self.box_head(fine, features)
        return self.class_head(pooled), torch.sigmoid(self.box_head(features))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training or not self.tta_flip:
            logits, box = self._heads(x)
            return {"logits": logits, "box": box}
        # test-time flip: run the image and its mirror in one batch, mirror the second box back
        n = x.shape[0]
        logits, box = self._heads(torch.cat([x, x.flip(3)], dim=0))
        plain, mirrored = box[:n], box[n:].clone()
        mirrored[:, 0] = 1.0 - box[n:, 0] - box[n:, 2]
        probs = 0.5 * (logits[:n].softmax(dim=1) + logits[n:].softmax(dim=1))
        return {
            "logits": probs.clamp_min(1e-12).log(),
            "box": 0.5 * (plain + mirrored),
            "agreement": _iou(plain, mirrored),
        }


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of ``(B, 4)`` normalised xywh boxes."""
    iw = (torch.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0)
    ih = (torch.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp_min(0)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


BOX_HEADS = ("edges", "dense")
"""The box heads of the ``box_head`` setting (see the module docstring)."""


def _dense_box_head(channels: int, grid: int, dropout: float) -> nn.Sequential:
    """The fully connected box head: logits of the normalised box (a sigmoid follows)."""
    squeeze = 32
    head = nn.Sequential(
        nn.Conv2d(channels, squeeze, 1, bias=False),
        nn.BatchNorm2d(squeeze),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(squeeze * grid * grid, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(256, 4),
    )
    last = head[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.copy_(torch.tensor([math.log(p / (1 - p)) for p in PRIOR_BOX]))
    return head


PRIOR_SPREAD = 0.15
"""Standard deviation (fraction of the image) of the starting prior of each side's position."""


class EdgeBoxHead(nn.Module):
    """The ``"edges"`` box head: a softmax over positions per side, read as its expectation.

    Input: the ``S/8`` features ``(B, fine, n, n)`` and the ``S/16`` ones ``(B, coarse, n/2, n/2)``;
    output ``(B, 4)`` normalised ``(x, y, w, h)``. Positions ``i / (n - 1)`` span the image from
    edge to edge, so a side on the image's border is reachable."""

    def __init__(self, fine: int, coarse: int, positions: int, hidden: int = 48) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            nn.Conv2d(fine + coarse, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.sides = nn.Conv2d(hidden, 4, 1, bias=False)  # left, top, right, bottom; position_bias is the bias
        nn.init.zeros_(self.sides.weight)
        where = torch.linspace(0.0, 1.0, positions)
        self.register_buffer("where", where, persistent=False)
        x, y, w, h = PRIOR_BOX
        self.position_bias = nn.Parameter(torch.stack([_prior_scores(where, c) for c in (x, y, x + w, y + h)]))

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(coarse, size=fine.shape[2:], mode="nearest")
        maps = self.sides(self.mix(torch.cat([fine, up], dim=1))).float()  # (B, 4, n, n)
        # left and right vary along x (pool over rows, dim 2); top and bottom along y (dim 3)
        along_x = maps[:, 0::2].logsumexp(dim=2)  # (B, 2, n): left, right
        along_y = maps[:, 1::2].logsumexp(dim=3)  # (B, 2, n): top, bottom
        scores = torch.stack([along_x[:, 0], along_y[:, 0], along_x[:, 1], along_y[:, 1]], dim=1)
        where: torch.Tensor = self.where  # type: ignore[assignment]  # a registered buffer
        sides = ((scores + self.position_bias).softmax(dim=2) * where).sum(dim=2)  # (B, 4)
        left, top, right, bottom = sides.unbind(dim=1)
        return torch.stack([left, top, (right - left).clamp_min(0.0), (bottom - top).clamp_min(0.0)], dim=1)


def _prior_scores(where: torch.Tensor, side: float) -> torch.Tensor:
    """Scores over ``where`` whose softmax is a bell of :data:`PRIOR_SPREAD` with its expectation
    at ``side`` exactly (the bell's centre is moved so that the part cut off by the image's edges
    does not pull the expectation inwards)."""

    def scores(centre: float) -> torch.Tensor:
        return -0.5 * ((where - centre) / PRIOR_SPREAD) ** 2

    low, high = -1.0, 2.0
    for _ in range(60):  # bisection: the expectation grows with the centre
        mid = 0.5 * (low + high)
        if float((scores(mid).softmax(dim=0) * where).sum()) < side:
            low = mid
        else:
            high = mid
    return scores(0.5 * (low + high))
