"""Helpers shared by the tests (not a test module): a model's proposal, built in one call."""

from __future__ import annotations

from typing import Any

from labeler.core.annotation import Annotation, Kind, State


def proposal(
    image_id: int, category_id: int, *, version: int | None, score: float | None, **geometry: Any
) -> Annotation:
    """A proposal of model version ``version``; its kind is that of the geometry given
    (``box_xywh``, ``polygons`` or ``rle``, with any other field of :class:`Annotation`)."""
    kind = Kind.BOX if "box_xywh" in geometry else Kind.POLYGON if "polygons" in geometry else Kind.MASK
    return Annotation(
        image_id=image_id,
        category_id=category_id,
        kind=kind,
        state=State.PROPOSED,
        model_version=version,
        score=score,
        **geometry,
    )
