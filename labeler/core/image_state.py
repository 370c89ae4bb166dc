"""Where an image stands in the labelling work, from its done flag and its annotations.

No Qt here: the image list colours and filters by it; the CLI and scripts can count by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ImageState(StrEnum):
    """Where an image stands. Marked done wins; else pending proposals; else accepted labels."""

    UNLABELLED = "unlabelled"
    LABELLED = "in progress"  # accepted labels, not marked done
    PROPOSALS = "with proposals"
    DONE = "done"


def image_state(*, done: bool, counts: Mapping[str, int]) -> ImageState:
    """The state of an image marked ``done`` or not, with ``counts`` of its annotations per
    annotation state (``{"proposed": 2, "accepted": 1}``; rejected proposals do not count)."""
    if done:
        return ImageState.DONE
    if counts.get("proposed", 0):
        return ImageState.PROPOSALS
    if counts.get("accepted", 0):
        return ImageState.LABELLED
    return ImageState.UNLABELLED
