"""One image through a plugin's network into checked proposals, and validation metrics.

Everything a plugin returns is checked here, so a wrong shape or an out-of-range score is reported
as a :class:`PluginError` naming the plugin instead of reaching the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from labeler.core.annotation import Category, Kind
from labeler.learning.api import LabelledImage, Plugin, PluginError, Prediction, Proposal
from labeler.learning.plugins import plugin_call

T = TypeVar("T")


def _call(plugin: Plugin, what: str, fn: Callable[[], T]) -> T:
    # memory: one image too big, not the plugin's fault
    return plugin_call(plugin, what, fn, passthrough=(MemoryError,))


def check_prediction(
    plugin: Plugin, prediction: Any, *, image_shape: tuple[int, int], classes: Sequence[Category]
) -> Prediction:
    """Check a plugin's :class:`Prediction` for an image of ``image_shape = (h, w)``.

    Boxes must lie inside the image (up to half a pixel of rounding, which is clipped away), masks
    must have the image's size, scores and uncertainty must lie in [0, 1], categories must be among
    ``classes``.
    """
    if not isinstance(prediction, Prediction):
        raise PluginError(plugin.name, f"proposals must return a Prediction, got {type(prediction).__name__}")
    h, w = image_shape
    known = {c.id for c in classes}
    fixed: list[Proposal] = []
    for p in prediction.proposals:
        if not isinstance(p, Proposal):
            raise PluginError(plugin.name, f"a proposal is a {type(p).__name__}, not a Proposal")
        if p.category_id not in known:
            raise PluginError(plugin.name, f"proposal for category {p.category_id}, which the model does not predict")
        if not (isinstance(p.score, (int, float)) and math.isfinite(p.score) and 0.0 <= p.score <= 1.0):
            raise PluginError(plugin.name, f"proposal score {p.score!r} is not in [0, 1]")
        kind = Kind(p.kind)
        if kind is Kind.BOX:
            if p.box_xywh is None or len(p.box_xywh) != 4 or not all(math.isfinite(v) for v in p.box_xywh):
                raise PluginError(plugin.name, f"box proposal without a finite (x, y, w, h): {p.box_xywh!r}")
            x, y, bw, bh = (float(v) for v in p.box_xywh)
            if x < -0.5 or y < -0.5 or x + bw > w + 0.5 or y + bh > h + 0.5 or bw < 0 or bh < 0:
                raise PluginError(plugin.name, f"box {p.box_xywh} lies outside the {w}x{h} image")
            x0, y0 = min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h))
            x1, y1 = min(max(x + bw, 0.0), float(w)), min(max(y + bh, 0.0), float(h))
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                continue
            fixed.append(Proposal(p.category_id, Kind.BOX, float(p.score), box_xywh=(x0, y0, x1 - x0, y1 - y0)))
        elif kind is Kind.MASK:
            if not p.rle or list(p.rle.get("size", [])) != [h, w]:
                raise PluginError(
                    plugin.name,
                    f"mask proposal of size {p.rle and p.rle.get('size')} on a {w}x{h} image "
                    f"(RLE size is [h, w] = [{h}, {w}])",
                )
            fixed.append(p)
        else:
            if not p.polygons:
                raise PluginError(plugin.name, "polygon proposal without polygons")
            for part in p.polygons:
                arr = np.asarray(part, dtype=np.float64).reshape(-1, 2)
                if (arr < -0.5).any() or (arr[:, 0] > w + 0.5).any() or (arr[:, 1] > h + 0.5).any():
                    raise PluginError(plugin.name, f"a polygon lies outside the {w}x{h} image")
            fixed.append(p)
    u = prediction.uncertainty
    if not (isinstance(u, (int, float)) and math.isfinite(u) and 0.0 <= u <= 1.0):
        raise PluginError(plugin.name, f"uncertainty {u!r} is not in [0, 1]")
    return Prediction(proposals=tuple(fixed), uncertainty=float(u), extra=prediction.extra)


def network_input(plugin: Plugin, image: np.ndarray, *, settings: Mapping[str, Any], device: str) -> Any:
    """``plugin.inputs`` for one ``(h, w, 3)`` uint8 RGB image, checked and moved to ``device``."""
    import torch

    tensor = _call(plugin, "inputs", lambda: plugin.inputs(image, settings=settings))
    if not isinstance(tensor, torch.Tensor) or tensor.ndim < 1 or tensor.shape[0] != 1:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise PluginError(plugin.name, f"inputs must return a tensor with a batch of one, got {shape}")
    return tensor.to(device)


def run_network(
    plugin: Plugin, model: Any, image: np.ndarray, *, settings: Mapping[str, Any], device: str = "cpu"
) -> Any:
    """The network's raw outputs for one ``(h, w, 3)`` uint8 RGB image, moved to the CPU."""
    return forward(plugin, model, network_input(plugin, image, settings=settings, device=device))


def forward(plugin: Plugin, model: Any, x: Any) -> Any:
    """The network on an input tensor (no gradients), outputs moved to the CPU."""
    import torch

    with torch.inference_mode():
        outputs = _call(plugin, "the model's forward", lambda: model(x))
    return _to_cpu(outputs)


def outputs_to_prediction(
    plugin: Plugin,
    outputs: Any,
    *,
    image_shape: tuple[int, int],
    classes: Sequence[Category],
    settings: Mapping[str, Any],
) -> Prediction:
    """``plugin.proposals`` on the network's outputs for an image of ``image_shape = (h, w)``, checked."""
    shape = (int(image_shape[0]), int(image_shape[1]))
    prediction = _call(
        plugin,
        "proposals",
        lambda: plugin.proposals(outputs, image_shape=shape, classes=tuple(classes), settings=settings),
    )
    return check_prediction(plugin, prediction, image_shape=shape, classes=classes)


def predict_image(
    plugin: Plugin,
    model: Any,
    image: np.ndarray,
    *,
    classes: Sequence[Category],
    settings: Mapping[str, Any],
    device: str = "cpu",
) -> Prediction:
    """Run the network on one image and return its checked :class:`Prediction` (pixels of ``image``)."""
    outputs = run_network(plugin, model, image, settings=settings, device=device)
    return outputs_to_prediction(plugin, outputs, image_shape=image.shape[:2], classes=classes, settings=settings)


def _to_cpu(outputs: Any) -> Any:
    import torch

    if isinstance(outputs, torch.Tensor):
        return outputs.to("cpu")
    if isinstance(outputs, tuple):
        return tuple(_to_cpu(o) for o in outputs)
    if isinstance(outputs, list):
        return [_to_cpu(o) for o in outputs]
    if isinstance(outputs, dict):
        return {k: _to_cpu(v) for k, v in outputs.items()}
    return outputs


def evaluate_samples(
    plugin: Plugin,
    model: Any,
    samples: Sequence[LabelledImage],
    *,
    settings: Mapping[str, Any],
    device: str = "cpu",
) -> dict[str, float]:
    """Predict every sample and return ``plugin.evaluate``'s metrics (checked: finite numbers,
    including ``plugin.metric``)."""
    if not samples:
        return {}
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        predictions = [
            predict_image(plugin, model, s.image, classes=s.classes, settings=settings, device=device) for s in samples
        ]
    finally:
        if was_training:
            model.train()
    metrics = _call(plugin, "evaluate", lambda: plugin.evaluate(predictions, samples, settings=settings))
    if not isinstance(metrics, Mapping):
        raise PluginError(plugin.name, f"evaluate must return a dict of numbers, got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PluginError(plugin.name, f"metric {key!r} is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise PluginError(plugin.name, f"metric {key!r} is {number}")
        out[str(key)] = number
    if plugin.metric not in out:
        raise PluginError(
            plugin.name, f"evaluate did not return its ranking metric {plugin.metric!r} (it returned {sorted(out)})"
        )
    return out
