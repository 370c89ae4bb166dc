"""The segmenter's networks (torch): ``naive`` and ``encoder-decoder``, with three unpoolings.

Both take a ``(n, 3, h, w)`` float tensor (normalised RGB, see :func:`labeler_segmenter.data.normalise`)
of any ``h, w`` and return ``(n, num_classes + 1, h, w)`` logits: channel 0 is background,
channel ``k`` is ``classes[k - 1]``. The per-pixel softmax is applied by the caller (the loss
works on logits). In evaluation mode with ``test_flips`` other than ``none``, they run the image
and its mirror images in one batch and return the log of the mean probability (mirrored back), so
the caller's softmax gives the averaged probabilities. They are fully convolutional: the
encoder-decoder pads its input on the bottom/right to a multiple of its stride (4) and crops its
output back, so any size works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

UNPOOLS = ("nearest", "max", "transposed")
SKIPS = ("none", "concat")
CHANNELS_LAST = torch.channels_last
"""Memory layout of activations: oneDNN's convolutions on CPU run markedly faster on it for these
narrow layers (measured: 15-45 % per training step), with identical results. Parameters keep the
default layout, so checkpoints do not change."""
STRIDE = 4
"""Total downsampling of the encoder-decoder (two 2x2 poolings)."""


def bf16_is_fast(device_type: str = "cpu") -> bool:
    """Whether ``auto`` precision picks bfloat16: on CUDA always, on CPU where oneDNN has native
    bfloat16 instructions (AVX512-BF16 / AMX); elsewhere bfloat16 would be emulated, i.e. slower."""
    if device_type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class ConvBlock(nn.Sequential):
    """``len(dilations)`` times conv 3x3 (``dilation`` d, padding d, same size) - BatchNorm - ReLU.

    The first conv maps ``in_channels`` to ``out_channels``; the rest keep ``out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, dilations: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for d in dilations:
            layers += [
                nn.Conv2d(channels, out_channels, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            channels = out_channels
        super().__init__(*layers)


class Unpool(nn.Module):
    """Doubles height and width of a ``(n, channels, h, w)`` tensor.

    - ``nearest``: each cell fills a 2x2 patch with its value;
    - ``max``: each value goes back to the position, inside its 2x2 window, where the matching
      :class:`torch.nn.MaxPool2d` (``return_indices=True``) found the maximum; zeros elsewhere.
      ``forward`` then needs that pooling's ``indices``;
    - ``transposed``: a learned 3x3 transposed convolution with stride 2 (padding 1, output
      padding 1, so ``h, w`` becomes exactly ``2h, 2w``); where the 3x3 footprints of neighbouring
      input cells overlap, their contributions add up.
    """

    def __init__(self, kind: str, channels: int) -> None:
        super().__init__()
        if kind not in UNPOOLS:
            raise ValueError(f"unpool must be one of {', '.join(UNPOOLS)}, not {kind!r}")
        self.kind = kind
        self.unpool: nn.Module | None = None
        if kind == "max":
            self.unpool = nn.MaxUnpool2d(2, stride=2)
        elif kind == "transposed":
            self.unpool = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        assert self.unpool is not None
        if self.kind == "max":
            if indices is None:
                raise ValueError("max unpooling needs the indices of its matching pooling layer")
            unpooled: torch.Tensor = self.unpool(x, indices)
        else:
            unpooled = self.unpool(x)
        return unpooled


PRECISIONS = ("auto", "bf16", "fp32")
TEST_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "h": ((), (3,)),
    "hv": ((), (3,), (2,), (2, 3)),
}
"""Test-time views: the image itself and its mirror images (flipped dimensions of ``(n, c, h, w)``)."""


def _with_test_flips(
    run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, views: tuple[tuple[int, ...], ...]
) -> torch.Tensor:
    """``run`` over ``x`` and its mirror images in one batch; each view's softmax is mirrored back
    and the mean is returned as log-probabilities (so a softmax of the result is the mean)."""
    n = x.shape[0]
    logits = run(torch.cat([x.flip(dims) if dims else x for dims in views]))
    probs = torch.softmax(logits, dim=1)
    total = torch.zeros_like(probs[:n])
    for i, dims in enumerate(views):
        total = total + (probs[i * n : (i + 1) * n].flip(dims) if dims else probs[i * n : (i + 1) * n])
    mean = total / len(views)
    return torch.log(mean.clamp_min(1e-12))


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def _check_test_flips(test_flips: str) -> tuple[tuple[int, ...], ...]:
    if test_flips not in TEST_FLIPS:
        raise ValueError(f"test_flips must be one of {', '.join(TEST_FLIPS)}, not {test_flips!r}")
    return TEST_FLIPS[test_flips]


def _autocast(x: torch.Tensor, precision: str) -> torch.autocast:
    """Mixed precision for the convolutions: bfloat16 compute, float32 parameters and BatchNorm
    statistics; ``auto`` uses it where :func:`bf16_is_fast`. Outputs are returned as float32."""
    device = x.device.type if x.device.type in ("cpu", "cuda") else "cpu"
    enabled = precision == "bf16" or (precision == "auto" and bf16_is_fast(device))
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right by reflection (replicate when too small to reflect) to a multiple."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class _Segmentation(nn.Module):
    """What both networks share: mixed-precision logits, and test-time flips in eval mode."""

    def __init__(self, *, precision: str, test_flips: str) -> None:
        super().__init__()
        self.precision = _check_precision(precision)
        self.test_views = _check_test_flips(test_flips)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and len(self.test_views) > 1:
            return _with_test_flips(self._logits, x, self.test_views)
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with _autocast(x, self.precision):
            return self._forward(x).float()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class EncoderDecoder(_Segmentation):
    """conv, pool, conv, pool, conv, unpool, conv, unpool, conv (+ a 1x1 classifier).

    ``widths = (w1, w2, w3)``: channels at full, half and quarter resolution. ``convs`` is the
    number of conv-BN-ReLU layers in each full/half-resolution block; ``middle_dilations`` are the
    dilations of the quarter-resolution block's layers (it ends back at ``w2`` channels so the
    tensor matches what the second pooling saw, which ``max`` unpooling needs). The first unpool
    undoes the second pool and the second unpool undoes the first (their indices, for ``max``).

    ``skips="concat"`` adds U-Net's skip connections: each decoder block also sees the features
    of the encoder block at its resolution (concatenated after the unpooling), so fine detail
    lost to pooling (thin membranes, object borders) reaches the output. ``"none"``: the classic
    encoder-decoder, where everything passes through the bottleneck.
    """

    def __init__(
        self,
        *,
        num_outputs: int,
        widths: Sequence[int] = (16, 32, 64),
        convs: int = 2,
        middle_dilations: Sequence[int] = (1, 2, 4),
        unpool: str = "max",
        precision: str = "fp32",
        test_flips: str = "none",
        skips: str = "none",
    ) -> None:
        super().__init__(precision=precision, test_flips=test_flips)
        if skips not in SKIPS:
            raise ValueError(f"skips must be one of {', '.join(SKIPS)}, not {skips!r}")
        self.skips = skips
        extra = 2 if skips == "concat" else 1
        w1, w2, w3 = widths
        self.enc1 = ConvBlock(3, w1, [1] * convs)
        self.pool1 = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.enc2 = ConvBlock(w1, w2, [1] * convs)
        self.pool2 = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.middle = nn.Sequential(ConvBlock(w2, w3, middle_dilations), ConvBlock(w3, w2, [1]))
        self.unpool2 = Unpool(unpool, w2)
        self.dec2 = ConvBlock(extra * w2, w1, [1] * convs)
        self.unpool1 = Unpool(unpool, w1)
        self.dec1 = ConvBlock(extra * w1, w1, [1] * convs)
        self.head = nn.Conv2d(w1, num_outputs, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _pad_to(x, STRIDE).contiguous(memory_format=CHANNELS_LAST)
        full = self.enc1(x)
        x, idx1 = self.pool1(full)
        half = self.enc2(x)
        x, idx2 = self.pool2(half)
        x = self.middle(x)
        x = self.unpool2(x, idx2)
        x = self.dec2(torch.cat((x, half), dim=1) if self.skips == "concat" else x)
        x = self.unpool1(x, idx1)
        x = self.dec1(torch.cat((x, full), dim=1) if self.skips == "concat" else x)
        logits: torch.Tensor = self.head(x)
        return logits[..., :h, :w]


class Naive(_Segmentation):
    """Stacked same-resolution conv-BN-ReLU layers (no pooling) and a 1x1 classifier."""

    def __init__(
        self,
        *,
        num_outputs: int,
        width: int = 16,
        depth: int = 6,
        dilations: Sequence[int] = (1,),
        precision: str = "fp32",
        test_flips: str = "none",
    ) -> None:
        super().__init__(precision=precision, test_flips=test_flips)
        pattern = [dilations[i % len(dilations)] for i in range(depth)]
        self.body = ConvBlock(3, width, pattern)
        self.head = nn.Conv2d(width, num_outputs, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.body(x.contiguous(memory_format=CHANNELS_LAST)))
        return logits
