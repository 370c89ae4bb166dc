"""The plugin interface: what a model plugin supplies, and the plain data it exchanges.

A plugin is an object registered under the entry-point group ``labeler.plugins`` (the entry point
names a class or a zero-argument factory). The runner in :mod:`labeler.learning` owns the loop:
data from the store, validation split, optimiser, checkpoints, versions, progress, cancel and
distributed training. A plugin supplies only what is specific to it:

1. ``build_model``: its network for the project's classes and settings (a ``torch.nn.Module``);
2. ``prepare``: a labelled image turned once into a cached training item (or :class:`SkipImage`);
3. ``example``: a cached item turned into one fixed-size training example (augmentation here);
4. ``losses``: named loss tensors for a batch (the runner sums them);
5. ``inputs`` / ``proposals``: an image to a network input, and the network output back to
   :class:`Prediction` (proposals with scores, plus an uncertainty for active learning);
6. ``evaluate``: validation metrics from predictions against the labels, ``metric`` naming the one
   that decides whether a new version beats the active one (higher is better).

Optional: ``decode_side(*, settings) -> int | None``. A plugin whose ``inputs`` shrinks every image
to one fixed size returns the side it needs (the localizer: its square input size); auto-labelling
may then decode JPEG files at 1/2, 1/4 or 1/8 size, as long as both sides keep at least that many
pixels, and hands ``inputs`` that smaller image (``proposals`` still gets the full image size).

Everything crossing this boundary is numpy or plain Python, except the module and the tensors the
module consumes and produces. Plugins import torch; this module does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from labeler.core.annotation import Annotation, Category, Kind

if TYPE_CHECKING:  # torch stays out of start-up
    import torch

ENTRY_POINT_GROUP = "labeler.plugins"


class SkipImage(Exception):
    """Raised by ``Plugin.prepare`` for an image the plugin cannot train on; the message says why."""


class PluginError(Exception):
    """A plugin misbehaved (raised, returned the wrong shape, produced NaN); names plugin and reason."""

    def __init__(self, plugin: str, reason: str) -> None:
        super().__init__(f"plugin {plugin!r}: {reason}")
        self.plugin = plugin
        self.reason = reason


@dataclass(frozen=True)
class Setting:
    """One user-facing setting of a plugin (``labeler train --set name=value``)."""

    name: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    legacy: Any = None
    """When not ``None``: the value model versions stored before this setting existed were made
    with (they lack it in their settings), so they load as they were trained whatever the
    default is now."""

    def parse(self, text: str) -> Any:
        """Turn the command line's text into a value of the default's type, checking choices."""
        kind = type(self.default)
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"{self.name} takes true or false, not {text!r}")
            value: Any = lowered in ("1", "true", "yes", "on")
        elif kind in (int, float):
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"{self.name} takes a number, not {text!r}") from None
        else:
            value = text
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(map(str, self.choices))}, not {text!r}")
        return value


@dataclass(frozen=True)
class LabelledImage:
    """A done image with its accepted labels, as the runner hands it to ``Plugin.prepare``.

    ``image`` is ``(h, w, 3)`` uint8 RGB. ``annotations`` are the accepted ones only.
    ``classes`` are the categories the model predicts, in output order (output 0 of a segmenter
    is background, then ``classes[0]`` is output 1). ``ignore_mask``, if given, marks pixels with
    no label (e.g. CamVid's "unlabelled").
    """

    image_id: int
    image: np.ndarray
    annotations: tuple[Annotation, ...]
    classes: tuple[Category, ...]
    ignore_mask: np.ndarray | None = None


@dataclass(frozen=True)
class Proposal:
    """One predicted label, in pixels of the image it was predicted on.

    Set ``box_xywh`` (top-left x, y, width, height) for boxes, ``rle`` (compressed COCO RLE) for
    masks, ``polygons`` for polygons. ``category_id`` is a project category id. ``score`` in [0, 1].
    """

    category_id: int
    kind: Kind
    score: float
    box_xywh: tuple[float, float, float, float] | None = None
    rle: dict[str, Any] | None = None
    polygons: tuple[np.ndarray, ...] | None = None


@dataclass(frozen=True)
class Prediction:
    """What a plugin says about one image: proposals and how unsure it is (higher = less sure,
    in [0, 1]) for "next most uncertain" ordering."""

    proposals: tuple[Proposal, ...]
    uncertainty: float
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Plugin(Protocol):
    """What a model plugin provides. See the module docstring for the order of calls."""

    name: str
    """Stable, short, lower-case name (``segmenter``); also the entry point's name."""
    task: str
    """What it proposes: ``"segmentation"`` (masks), ``"localization"`` (one box per image) or
    ``"detection"`` (a box per object, any number per image)."""
    metric: str
    """Key of ``evaluate``'s result that ranks versions (higher is better)."""
    settings: tuple[Setting, ...]

    def build_model(self, *, num_classes: int, settings: Mapping[str, Any]) -> torch.nn.Module:
        """The network for ``num_classes`` foreground classes."""
        ...

    def prepare(self, sample: LabelledImage, *, settings: Mapping[str, Any]) -> Any:
        """Cache what training needs from one image (resized pixels, targets). Runs once per image.

        Raise :class:`SkipImage` for an image it cannot use (the runner counts and reports these).
        """
        ...

    def example(
        self, item: Any, *, augment: bool, rng: np.random.Generator, settings: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """One training example of fixed shape from a cached item: arrays the runner stacks into a
        batch of tensors under the same keys (``"image"`` is the network input)."""
        ...

    def losses(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *, settings: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Named scalar losses for a batch; the runner sums them and back-propagates."""
        ...

    def inputs(self, image: np.ndarray, *, settings: Mapping[str, Any]) -> torch.Tensor:
        """Network input for one ``(h, w, 3)`` uint8 RGB image, batch of one."""
        ...

    def proposals(
        self, outputs: Any, *, image_shape: tuple[int, int], classes: Sequence[Category], settings: Mapping[str, Any]
    ) -> Prediction:
        """Turn the network's output for one image of ``image_shape = (h, w)`` into proposals."""
        ...

    def evaluate(
        self, predictions: Sequence[Prediction], samples: Sequence[LabelledImage], *, settings: Mapping[str, Any]
    ) -> dict[str, float]:
        """Validation metrics of predictions against the labelled images (same order)."""
        ...


def decode_side(plugin: Plugin, settings: Mapping[str, Any]) -> int | None:
    """The plugin's optional ``decode_side`` (see the module docstring), or ``None``."""
    hook = getattr(plugin, "decode_side", None)
    if hook is None:
        return None
    side = hook(settings=settings)
    if side is None:
        return None
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise ValueError(f"decode_side must return a positive whole number of pixels or None, not {side!r}")
    return side


def default_settings(plugin: Plugin) -> dict[str, Any]:
    return {s.name: s.default for s in plugin.settings}


def resolve_settings(plugin: Plugin, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``overrides``; unknown names are an error that lists the known ones."""
    known = {s.name: s for s in plugin.settings}
    out = default_settings(plugin)
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(
                f"plugin {plugin.name!r} has no setting {key!r} (it has: {', '.join(sorted(known)) or 'none'})"
            )
        out[key] = (
            known[key].parse(value) if isinstance(value, str) and not isinstance(known[key].default, str) else value
        )
    return out


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` contiguous uint8 from RGB, grayscale ``(h, w)`` / ``(h, w, 1)`` or RGBA input
    (alpha dropped); the form plugins' ``inputs`` and ``prepare`` work on. Raises ``ValueError``
    for another dtype or shape."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images are uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an (h, w, 3) image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)
