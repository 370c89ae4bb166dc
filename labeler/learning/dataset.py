"""Training data from a project: done images with their accepted labels, and the validation split.

The split is fixed by image id alone (a hash), so an image stays on its side of the split however
many images are added or marked done later, and every version is measured on comparable data.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from labeler.core.annotation import Category, State
from labeler.core.geometry import decode_rle
from labeler.learning.api import LabelledImage

VALIDATION_FRACTION = 0.2


def split_key(image_id: int) -> float:
    """Where an image falls in [0, 1) for the split: a hash of its id (stable across runs)."""
    digest = hashlib.sha256(f"labeler-split-{int(image_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def validation_split(image_ids: Sequence[int], *, fraction: float = VALIDATION_FRACTION) -> tuple[list[int], list[int]]:
    """``(train_ids, validation_ids)``: images whose :func:`split_key` is below ``fraction`` are
    validation, topped up with the next lowest keys to ``round(fraction * n)`` images (at least one)
    so that a small project is not judged on a single image by chance. With two or more images
    there is at least one on each side; a single image trains and nothing validates."""
    ids = sorted({int(i) for i in image_ids})
    if len(ids) < 2:
        return ids, []
    by_key = sorted(ids, key=split_key)
    target = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    val = [i for i in by_key if split_key(i) < fraction]
    if len(val) < target:
        val = by_key[:target]
    if len(val) == len(ids):
        val = val[:-1]
    val_set = set(val)
    return [i for i in ids if i not in val_set], sorted(val_set)


def project_classes(project: Any) -> tuple[Category, ...]:
    """The classes a model of this project predicts: its categories in id order."""
    return tuple(project.categories())


def labelled_image(project: Any, image_id: int, classes: Sequence[Category]) -> LabelledImage:
    """One image of the project with its accepted annotations and ignore mask."""
    image = project.read_image(image_id)
    annotations = tuple(project.annotations(image_id, states=[State.ACCEPTED]))
    ignore = None
    rle = project.ignore_mask(image_id)
    if rle is not None:
        ignore = decode_rle(rle)
        if ignore.shape != image.shape[:2]:
            raise ValueError(
                f"image {image_id}: ignore mask is {ignore.shape[1]}x{ignore.shape[0]}, "
                f"the image {image.shape[1]}x{image.shape[0]}"
            )
    return LabelledImage(
        image_id=image_id, image=image, annotations=annotations, classes=tuple(classes), ignore_mask=ignore
    )


UNREADABLE = "unreadable image"
"""The skip reason (see :func:`prepare_all`) of a done image whose file cannot be read."""


@dataclass(frozen=True)
class UnreadableImage:
    """A done image that could not be read (missing, truncated, not an image, too big for
    memory): :func:`iter_labelled_images` yields it in its place, :func:`prepare_all` skips it."""

    image_id: int
    reason: str


def _labelled_or_unreadable(
    project: Any, image_id: int, classes: Sequence[Category]
) -> LabelledImage | UnreadableImage:
    from labeler.core.images import ImageError

    try:
        return labelled_image(project, image_id, classes)
    except (ImageError, OSError) as exc:
        return UnreadableImage(image_id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except MemoryError:
        return UnreadableImage(image_id, f"image {image_id} does not fit in memory")


def iter_labelled_images(
    project: Any, image_ids: Sequence[int], classes: Sequence[Category], *, threads: int = 2
) -> Iterator[LabelledImage | UnreadableImage]:
    """:func:`labelled_image` for each id, in order, decoding a few ahead in threads; an image
    whose file cannot be read comes as an :class:`UnreadableImage` (one bad file never stops a
    run)."""
    if not image_ids:
        return
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        ids = list(image_ids)
        ahead = 2 * max(1, threads)
        # the oldest first; a sample taken is dropped at once (its image may be large)
        pending: deque[Future[LabelledImage | UnreadableImage]] = deque(
            pool.submit(_labelled_or_unreadable, project, image_id, classes) for image_id in ids[:ahead]
        )
        for index in range(len(ids)):
            sample = pending.popleft().result()
            nxt = index + ahead
            if nxt < len(ids):
                pending.append(pool.submit(_labelled_or_unreadable, project, ids[nxt], classes))
            yield sample


def prepare_all(
    plugin: Any,
    samples: Iterator[LabelledImage | UnreadableImage] | Sequence[LabelledImage | UnreadableImage],
    *,
    settings: Any,
    keep_samples: bool = False,
    on_item: Callable[[int], None] | None = None,
    unreadable: list[UnreadableImage] | None = None,
) -> tuple[list[Any], list[LabelledImage], dict[str, int]]:
    """``plugin.prepare`` over samples: ``(items, kept samples, skipped reasons -> count)``.

    ``kept samples`` (only with ``keep_samples``) are those the plugin did not skip, in order.
    An :class:`UnreadableImage` is skipped as :data:`UNREADABLE` (and appended to ``unreadable``
    when given). Anything but :class:`SkipImage` raised by the plugin becomes a :class:`PluginError`.
    """
    from labeler.learning.api import SkipImage
    from labeler.learning.plugins import plugin_call

    items: list[Any] = []
    kept: list[LabelledImage] = []
    skipped: dict[str, int] = {}
    for n, sample in enumerate(samples, start=1):
        if isinstance(sample, UnreadableImage):
            skipped[UNREADABLE] = skipped.get(UNREADABLE, 0) + 1
            if unreadable is not None:
                unreadable.append(sample)
            continue
        try:
            item = plugin_call(
                plugin,
                "prepare",
                partial(plugin.prepare, sample, settings=settings),
                passthrough=(SkipImage, MemoryError),
                where=f" (image {sample.image_id})",
            )
        except SkipImage as exc:
            reason = str(exc) or "skipped"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        except MemoryError:  # one image too big for memory: left out, the run goes on
            reason = "does not fit in memory"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        items.append(item)
        if keep_samples:
            kept.append(sample)
        if on_item is not None:
            on_item(n)
    return items, kept, skipped
