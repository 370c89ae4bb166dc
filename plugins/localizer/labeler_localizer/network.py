"""The localizer's network: one convolutional backbone, a class head and a box head.

Input: ``(B, 3, S, S)`` float32, the image stretched to a square and normalised (see
:mod:`labeler_localizer.boxes`). Output: a dict of tensors

- ``"logits"`` ``(B, C)``: class logits (softmax gives the class probabilities);
- ``"box"`` ``(B, 4)``: normalised ``(x, y, w, h)`` of the object (top-left corner, width,
  height, fractions of the image's width and height), each in ``(0, 1)`` through a sigmoid;
- in evaluation mode with test-time flipping on, also ``"agreement"`` ``(B,)``: IoU of the boxes
  predicted on the image and on its mirror image (1 = the two views agree), used for uncertainty.

The box head keeps the spatial layout: the backbone's ``S/16 x S/16`` feature map is squeezed by a
1x1 convolution and flattened into fully connected layers, so position is not averaged away. Its
last layer starts at zero weight with a bias that encodes a prior box (centred, 60 % of the
image), so training starts from a sensible box and learns offsets from it.
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
        self, *, num_classes: int, input_size: int = 96, width: int = 16, dropout: float = 0.2, tta_flip: bool = True
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("the localizer needs at least one class")
        if input_size % 16 or input_size < 32:
            raise ValueError(f"input_size must be a multiple of 16 and at least 32, got {input_size}")
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
        grid = input_size // 16
        self.class_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c4, num_classes))
        squeeze = 32
        self.box_head = nn.Sequential(
            nn.Conv2d(c4, squeeze, 1, bias=False),
            nn.BatchNorm2d(squeeze),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(squeeze * grid * grid, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, 4),
        )
        last = self.box_head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([math.log(p / (1 - p)) for p in PRIOR_BOX]))
        # NHWC convolutions run markedly faster on CPU here; checkpoints store contiguous copies
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit this keyword of Module.to

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x.contiguous(memory_format=torch.channels_last))
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
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
