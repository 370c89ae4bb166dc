"""Per-class probabilities of a segmentation model version on one crop (for the assisted tools).

A segmentation plugin's network outputs per-pixel logits ``(1, K + 1, h', w')`` (background
first, then the version's classes in order); this runs the version on a crop and returns their
softmax at the crop's own size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from labeler.learning.api import PluginError
from labeler.learning.predict import run_network

if TYPE_CHECKING:
    from labeler.core.store import Project
    from labeler.learning.checkpoints import LoadedModel


def active_segmentation_model(project: Project, *, plugin: str | None = None) -> LoadedModel | None:
    """The active version of ``plugin`` (or of the segmentation plugin whose active version is
    newest), loaded; ``None`` when no segmentation plugin has a trained version in the project."""
    from labeler.learning.autolabel import load_model
    from labeler.learning.plugins import discover

    found = discover()
    names = [plugin] if plugin is not None else [n for n, p in found.items() if p.task == "segmentation"]
    best = None
    for name in names:
        if name not in found or found[name].task != "segmentation":
            continue
        version = project.active_model_version(name)
        if version is not None and (best is None or (version.id or 0) > (best.id or 0)):
            best = version
    if best is None:
        return None
    return load_model(project, best.plugin, version_id=best.id)


def class_probabilities(loaded: LoadedModel, crop: np.ndarray) -> np.ndarray:
    """``(K + 1, h, w)`` float32 softmax of the version's logits on an ``(h, w, 3)`` uint8 RGB
    crop: channel 0 is background, channel ``k`` is ``loaded.classes[k - 1]``."""
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"class_probabilities takes an (h, w, 3) uint8 RGB crop, got {crop.shape} {crop.dtype}")
    outputs = run_network(loaded.plugin, loaded.model, crop, settings=loaded.settings, device=loaded.device)
    logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    shape = tuple(getattr(logits, "shape", ()))
    if len(shape) != 4 or shape[0] != 1 or shape[1] != len(loaded.classes) + 1:
        raise PluginError(loaded.plugin.name, f"expected (1, {len(loaded.classes) + 1}, h, w) logits, got {shape}")
    z = logits[0].detach().float().cpu().numpy()
    z = z - z.max(axis=0, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = (e / e.sum(axis=0, keepdims=True)).astype(np.float32)
    h, w = crop.shape[:2]
    if probs.shape[1:] != (h, w):
        probs = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in probs])
    return probs


def class_channel(loaded: LoadedModel, category_id: int) -> int | None:
    """The channel of ``category_id`` in :func:`class_probabilities`, or ``None`` if the version
    does not predict it."""
    for k, c in enumerate(loaded.classes):
        if c.id == category_id:
            return k + 1
    return None
