"""The segmenter's training losses (torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labeler_segmenter.data import IGNORE

MAX_WEIGHT = 20.0
"""Cap on a class's cross-entropy weight relative to the pixel-weighted mean of 1."""


def class_weights(target: torch.Tensor, num_outputs: int, weighting: str) -> torch.Tensor | None:
    """Per-class cross-entropy weights from the class frequencies ``f`` of this batch's labelled
    pixels: ``f**-0.5`` (``sqrt``) or ``1/f`` (``inverse``), scaled so that their mean over the
    batch's pixels is 1 and capped at :data:`MAX_WEIGHT`; ``None`` for ``none``."""
    if weighting == "none":
        return None
    if weighting not in ("sqrt", "inverse"):
        raise ValueError(f"class_weighting must be none, sqrt or inverse, not {weighting!r}")
    valid = target[target != IGNORE]
    counts = torch.bincount(valid.reshape(-1), minlength=num_outputs)[:num_outputs].float()
    total = counts.sum()
    if total == 0:
        return None
    freq = counts / total
    power = 0.5 if weighting == "sqrt" else 1.0
    weights = torch.where(freq > 0, freq.clamp_min(1e-12) ** -power, torch.zeros_like(freq))
    weights = weights / (weights * freq).sum()
    return weights.clamp_max(MAX_WEIGHT)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - mean_k dice_k`` over the classes present in the batch's labelled pixels, where
    ``dice_k = 2 sum(p_k t_k) / (sum p_k + sum t_k)`` on labelled pixels (softmax ``p``)."""
    num_outputs = logits.shape[1]
    valid = target != IGNORE
    safe = torch.where(valid, target, torch.zeros_like(target))
    probs = torch.softmax(logits, dim=1) * valid.unsqueeze(1)
    onehot = F.one_hot(safe, num_outputs).permute(0, 3, 1, 2).to(probs.dtype) * valid.unsqueeze(1)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    dice = (2.0 * inter + 1.0) / (denom + 1.0)
    return 1.0 - dice[present].mean()


def segmentation_losses(
    logits: torch.Tensor, target: torch.Tensor, *, weighting: str, dice_weight: float
) -> dict[str, torch.Tensor]:
    """``{"ce": ..., "dice": ...}`` for ``(n, K, h, w)`` logits and ``(n, h, w)`` class indices
    (255 = ignored). A batch with no labelled pixel gives zero losses that still depend on the
    network (so the step is a no-op rather than an error)."""
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size")
    target = target.long()
    num_outputs = logits.shape[1]
    if not bool((target != IGNORE).any()):
        zero = logits.sum() * 0.0
        return {"ce": zero} if dice_weight <= 0 else {"ce": zero, "dice": zero}
    weights = class_weights(target, num_outputs, weighting)
    ce = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)
    out = {"ce": ce}
    if dice_weight > 0:
        out["dice"] = dice_weight * soft_dice_loss(logits, target)
    return out
