"""A minimal labeler plugin: a two-layer fully convolutional per-pixel classifier.

It is deliberately tiny (it learns colour, not shape) and exists to show, and to test, everything
a plugin must supply. See the README's "Writing a plugin" section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labeler.core.annotation import Category, Kind
from labeler.core.geometry import annotation_mask, decode_rle, encode_mask
from labeler.learning.api import LabelledImage, Prediction, Proposal, Setting, SkipImage

IGNORE = -1
"""Target value of pixels that carry no label (the ignore mask)."""


class MinimalSegmenter:
    """Semantic segmentation with two 3x3 convolutions; output 0 is background."""

    name = "minimal"
    task = "segmentation"
    metric = "miou"
    settings = (
        Setting("size", 32, "side of the square training crops, in pixels"),
        Setting("width", 16, "channels of the hidden layer"),
        Setting("lr", 0.03, "AdamW learning rate"),
        Setting("batch_size", 4, "examples per optimiser step"),
    )

    def build_model(self, *, num_classes: int, settings: Mapping[str, Any]) -> nn.Module:
        width = int(settings["width"])
        return nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes + 1, 3, padding=1)
        )

    def prepare(self, sample: LabelledImage, *, settings: Mapping[str, Any]) -> dict[str, np.ndarray]:
        h, w = sample.image.shape[:2]
        if h < 2 or w < 2:
            raise SkipImage(f"image is too small ({w}x{h})")
        target = _target(sample)
        size = int(settings["size"])
        image = cv2.resize(sample.image, (size, size), interpolation=cv2.INTER_AREA)
        target = cv2.resize(target, (size, size), interpolation=cv2.INTER_NEAREST)
        return {"image": image, "target": target}

    def example(
        self, item: dict[str, np.ndarray], *, augment: bool, rng: np.random.Generator, settings: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        image, target = item["image"], item["target"]
        if augment and rng.random() < 0.5:
            image, target = image[:, ::-1], target[:, ::-1]
        return {"image": _chw(image), "target": target.astype(np.int64)}

    def losses(
        self, model: nn.Module, batch: Mapping[str, torch.Tensor], *, settings: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        logits = model(batch["image"])
        target = batch["target"]
        if bool((target == IGNORE).all()):
            return {"ce": logits.sum() * 0.0}
        return {"ce": F.cross_entropy(logits, target, ignore_index=IGNORE)}

    def inputs(self, image: np.ndarray, *, settings: Mapping[str, Any]) -> torch.Tensor:
        return torch.from_numpy(_chw(image))[None]

    def proposals(
        self, outputs: Any, *, image_shape: tuple[int, int], classes: Sequence[Category], settings: Mapping[str, Any]
    ) -> Prediction:
        probs = torch.softmax(outputs.float(), dim=1)[0, :, : image_shape[0], : image_shape[1]]
        best, label = probs.max(dim=0)
        label_np, probs_np = label.numpy(), probs.numpy()
        found = []
        for index, category in enumerate(classes, start=1):
            mask = label_np == index
            if mask.any():
                score = float(np.clip(probs_np[index][mask].mean(), 0.0, 1.0))
                found.append(Proposal(category_id=category.id, kind=Kind.MASK, score=score, rle=encode_mask(mask)))
        uncertainty = float(np.clip(1.0 - best.mean().item(), 0.0, 1.0))
        return Prediction(proposals=tuple(found), uncertainty=uncertainty)

    def evaluate(
        self, predictions: Sequence[Prediction], samples: Sequence[LabelledImage], *, settings: Mapping[str, Any]
    ) -> dict[str, float]:
        """Mean over foreground classes of intersection over union, pooled over all images."""
        n = len(samples[0].classes) if samples else 0
        inter, union = np.zeros(n + 1), np.zeros(n + 1)
        for prediction, sample in zip(predictions, samples, strict=True):
            truth = _target(sample)
            h, w = truth.shape
            guess = np.zeros((h, w), np.int64)
            index_of = {c.id: i for i, c in enumerate(sample.classes, start=1)}
            for p in prediction.proposals:
                if p.rle is not None and p.category_id in index_of:
                    guess[decode_rle(p.rle)] = index_of[p.category_id]
            valid = truth != IGNORE
            for k in range(1, n + 1):
                a, b = (guess == k) & valid, (truth == k) & valid
                inter[k] += np.logical_and(a, b).sum()
                union[k] += np.logical_or(a, b).sum()
        present = union[1:] > 0
        miou = float((inter[1:][present] / union[1:][present]).mean()) if present.any() else 0.0
        return {"miou": miou}


def _chw(image: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 to ``(3, h, w)`` float32 in [0, 1]."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _target(sample: LabelledImage) -> np.ndarray:
    """``(h, w)`` int64 class map: 0 background, i for ``classes[i-1]``, :data:`IGNORE` ignored."""
    h, w = sample.image.shape[:2]
    target = np.zeros((h, w), np.int64)
    index_of = {c.id: i for i, c in enumerate(sample.classes, start=1)}
    for ann in sample.annotations:
        if ann.category_id in index_of:
            target[annotation_mask(ann, h, w)] = index_of[ann.category_id]
    if sample.ignore_mask is not None:
        target[np.asarray(sample.ignore_mask, bool)] = IGNORE
    return target
