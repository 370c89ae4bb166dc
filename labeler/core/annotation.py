"""Plain data types of the annotation model: images, categories, annotations.

Conventions, everywhere in labeler:
- pixel coordinates, origin at the top-left corner of the top-left pixel, x to the right, y down;
- boxes are ``box_xywh = (x, y, w, h)`` in pixels: top-left corner, width, height;
- polygons are ``(N, 2)`` float64 arrays of ``(x, y)`` vertices in pixels, one array per part;
- masks are COCO run-length encodings (``{"size": [h, w], "counts": str}``, compressed), or
  ``(h, w)`` boolean arrays where code needs pixels.

No Qt, no torch: these cross every layer boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np


class Kind(StrEnum):
    """What geometry an annotation carries."""

    BOX = "box"
    POLYGON = "polygon"
    MASK = "mask"


class State(StrEnum):
    """Where an annotation stands in review. Human labels are always ``ACCEPTED``."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Category:
    """A class the user labels. ``id`` is stable for the life of the project (1, 2, ...)."""

    id: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ImageRecord:
    """One image of a project.

    ``path`` is relative to the project folder (POSIX separators). ``width``/``height`` are in
    pixels after EXIF orientation, ``None`` until first read. ``uncertainty`` is set by the last
    auto-label run (higher is less sure), ``None`` if never auto-labelled.
    """

    id: int
    path: str
    width: int | None
    height: int | None
    done: bool
    content_hash: str | None = None
    uncertainty: float | None = None


@dataclass(frozen=True, eq=False)
class Annotation:
    """One label on one image.

    Exactly the geometry of ``kind`` is set: ``box_xywh`` for boxes, ``polygons`` for polygons,
    ``rle`` for masks. ``model_version`` is ``None`` for human labels, else the id of the model
    version that proposed it (an edited proposal becomes human: ``model_version=None``).
    ``score`` is the model's confidence in [0, 1] (``None`` for human labels). ``id`` is ``None``
    until the store saves it.
    """

    image_id: int
    category_id: int
    kind: Kind
    box_xywh: tuple[float, float, float, float] | None = None
    polygons: tuple[np.ndarray, ...] | None = None
    rle: dict[str, Any] | None = None
    state: State = State.ACCEPTED
    model_version: int | None = None
    score: float | None = None
    iscrowd: bool = False
    group_id: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    created: float | None = None
    updated: float | None = None
    revision: int | None = None
    """How many times the stored annotation was written (``None``: not known, no check); the
    store refuses to save a copy whose revision is no longer the stored one."""

    def __post_init__(self) -> None:
        kind = self.kind if type(self.kind) is Kind else Kind(self.kind)  # fast path: enum calls cost
        object.__setattr__(self, "kind", kind)
        if type(self.state) is not State:
            object.__setattr__(self, "state", State(self.state))
        if kind is Kind.BOX:
            if self.box_xywh is None or len(self.box_xywh) != 4:
                raise ValueError("a box annotation needs box_xywh = (x, y, w, h)")
            object.__setattr__(self, "box_xywh", tuple(float(v) for v in self.box_xywh))
        elif kind is Kind.POLYGON:
            if not self.polygons:
                raise ValueError("a polygon annotation needs at least one polygon")
            parts = []
            for part in self.polygons:
                arr = np.asarray(part, dtype=np.float64).reshape(-1, 2)
                if len(arr) < 3:
                    raise ValueError("a polygon needs at least 3 vertices")
                arr.setflags(write=False)
                parts.append(arr)
            object.__setattr__(self, "polygons", tuple(parts))
        elif kind is Kind.MASK and (not self.rle or "size" not in self.rle or "counts" not in self.rle):
            raise ValueError("a mask annotation needs a COCO RLE {'size', 'counts'}")
        if self.score is not None and not (0.0 <= float(self.score) <= 1.0):
            raise ValueError(f"score must lie in [0, 1], got {self.score}")

    @property
    def is_proposal(self) -> bool:
        return self.state is State.PROPOSED

    @property
    def is_human(self) -> bool:
        return self.model_version is None


def as_human(ann: Annotation) -> Annotation:
    """What an annotation becomes once a person edits it: a human label (accepted, no model
    version, no score). An edited proposal no longer counts as an accepted proposal, so the time
    saved by the model (:mod:`labeler.core.effort`) is not claimed for it."""
    return replace(ann, state=State.ACCEPTED, model_version=None, score=None)
