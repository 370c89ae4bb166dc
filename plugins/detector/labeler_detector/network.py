"""The detector's network: a convolutional backbone and, at every cell of a 1/8 (or 1/16) grid and
for each anchor, a class head (classes plus "no object") and a box head.

Input: ``(B, 3, H, W)`` float32 with ``H`` and ``W`` multiples of 32 (see
:mod:`labeler_detector.grid`). Output, with ``S`` the grid's stride (8 or 16), a dict of tensors

- ``"logits"`` ``(B, A, C + 1, H/S, W/S)``: class logits per anchor and cell, index 0 = "no object";
- ``"box"`` ``(B, A, 4, H/S, W/S)``: the encoded box ``(tx, ty, tw, th)`` per anchor and cell.

The backbone runs stages at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input (two 3x3 convolutions each,
the first with stride 2); the 1/32 stage, upsampled, joins the 1/16 one, so each cell sees about
250 input pixels around it (objects up to most of the input). With stride 8 that merge, upsampled
again, joins the 1/8 stage (a top-down path as in a feature pyramid), so a cell of 8 pixels has
both the fine stage's detail (small objects, touching ones apart) and the deep stages' context.
The class head's "no object" bias starts at a prior of 99 %, so early training is not swamped by
the many empty cells.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from labeler_detector.grid import STRIDES

_STEM_1_8 = 6
"""Layers of ``Detector.stem`` up to and including the 1/8 stage."""


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Detector(nn.Module):
    """Backbone plus dense heads; see the module docstring for shapes.

    ``width`` is the channel count of the first stage (later stages 2x, 4x, 6x, 8x); ``stride``
    the grid's cell in input pixels, 8 or 16.
    """

    def __init__(self, *, num_classes: int, anchors: int, width: int = 16, stride: int = 16) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("the detector needs at least one class")
        if anchors < 1:
            raise ValueError("the detector needs at least one anchor")
        if stride not in STRIDES:
            raise ValueError(f"the detector's grid stride is one of {', '.join(map(str, STRIDES))}, not {stride}")
        c1, c2, c3, c4, c5 = width, 2 * width, 4 * width, 6 * width, 8 * width
        self.num_classes = num_classes
        self.anchors = anchors
        self.stride = stride
        self.stem = nn.Sequential(
            _conv(3, c1, stride=2),
            _conv(c1, c1),  # 1/2
            _conv(c1, c2, stride=2),
            _conv(c2, c2),  # 1/4
            _conv(c2, c3, stride=2),
            _conv(c3, c3),  # 1/8
            _conv(c3, c4, stride=2),
            _conv(c4, c4),  # 1/16
        )
        self.deep = nn.Sequential(_conv(c4, c5, stride=2), _conv(c5, c5))  # 1/32
        self.fuse = _conv(c4 + c5, c4)
        if stride == 8:
            self.fuse8 = _conv(c3 + c4, c3)
        c_head = c4 if stride == 16 else c3
        self.head = _conv(c_head, c_head)
        k = num_classes + 1
        self.out = nn.Conv2d(c_head, anchors * (k + 4), 1)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            assert self.out.bias is not None  # nn.Conv2d has one by default
            bias = self.out.bias.view(anchors, k + 4)
            bias.zero_()
            bias[:, 0] = math.log(99.0 * num_classes)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit this keyword of Module.to

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"input sides must be multiples of 32, got {tuple(x.shape[-2:])}")
        f8 = x.contiguous(memory_format=torch.channels_last)
        for layer in list(self.stem)[:_STEM_1_8]:
            f8 = layer(f8)
        f16 = f8
        for layer in list(self.stem)[_STEM_1_8:]:
            f16 = layer(f16)
        f32 = self.deep(f16)
        up = F.interpolate(f32, size=f16.shape[-2:], mode="nearest")
        p = self.fuse(torch.cat([f16, up], dim=1))
        if self.stride == 8:
            up = F.interpolate(p, size=f8.shape[-2:], mode="nearest")
            p = self.fuse8(torch.cat([f8, up], dim=1))
        y = self.out(self.head(p))
        b, _, gh, gw = y.shape
        y = y.reshape(b, self.anchors, self.num_classes + 5, gh, gw)
        return {"logits": y[:, :, : self.num_classes + 1], "box": y[:, :, self.num_classes + 1 :]}
