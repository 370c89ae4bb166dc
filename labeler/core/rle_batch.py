"""The whole-RLE check of :func:`~labeler.core.geometry.check_rle`, for many masks at once.

An import or a batch of proposals brings masks by the thousand; checking each counts string in
its own Python call costs ~40 us a mask (most of a 20,000-image COCO import). Here the counts
strings of a batch are joined and decoded by numpy in one pass: every number of COCO's compressed
alphabet, the differences of its fourth and later numbers undone per string (a cumulative sum
restarted at each string), and per string the sum of the runs (which must be ``h * w``), the
smallest run (never negative) and the mask's area (the sum of its runs of ones).

The rules and the messages are :func:`check_rle`'s; what the vectorised pass cannot decide exactly
(uncompressed list counts, bytes, a number longer than seven characters, characters outside the
alphabet, a string cut in the middle of a number) goes through :func:`check_rle` itself, one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labeler.core.geometry import Rle, check_rle, remember_checked_many, rle_counts

_MAX_CODES = 1 << 24
"""Characters decoded in one numpy pass (int64 arrays of a few of these: a few hundred MB at most)."""
_MAX_STRINGS = 4096
"""Strings decoded in one numpy pass (what an import checks between two writes)."""


def check_rles(rles: Sequence[Any], *, max_pixels: int) -> list[tuple[Rle, int] | ValueError]:
    """For each of ``rles``: ``(rle as compressed RLE, its area in pixels)`` once it is known to be
    whole (as :func:`check_rle` decides), else the ``ValueError`` saying why it is not."""
    out: list[tuple[Rle, int] | ValueError | None] = [None] * len(rles)
    batch: list[int] = []
    texts: list[str] = []
    sizes: list[tuple[int, int]] = []
    for i, rle in enumerate(rles):
        size = rle.get("size") if type(rle) is dict else None
        text = rle.get("counts") if size is not None else None
        if (  # the usual mask, taken without a call: [h, w] as two ints, non-empty ASCII counts
            type(size) is list
            and len(size) == 2
            and type(size[0]) is int
            and type(size[1]) is int
            and size[0] > 0
            and size[1] > 0
            and size[0] * size[1] <= max_pixels
            and type(text) is str
            and text
            and text.isascii()
        ):
            batch.append(i)
            texts.append(text)
            sizes.append((size[0], size[1]))
            continue
        try:  # anything else: each rule in turn, with its message
            h, w = _size(rle, max_pixels)
        except ValueError as exc:
            out[i] = exc
            continue
        text = rle["counts"]
        if isinstance(text, str) and text and text.isascii():
            batch.append(i)
            texts.append(text)
            sizes.append((h, w))
        else:
            out[i] = _one(rle, max_pixels)
    start = 0
    while start < len(texts):  # in slices of at most _MAX_CODES characters
        stop, chars = start, 0
        while (
            stop < len(texts)
            and stop - start < _MAX_STRINGS
            and (stop == start or chars + len(texts[stop]) <= _MAX_CODES)
        ):
            chars += len(texts[stop])
            stop += 1
        results = _decoded(texts[start:stop], sizes[start:stop])
        for k, result in enumerate(results):
            i = batch[start + k]
            out[i] = result if result is not None else _one(rles[i], max_pixels)
        start = stop
    return [r if r is not None else ValueError("unchecked") for r in out]


def _size(rle: Any, max_pixels: int) -> tuple[int, int]:
    """The mask's ``(h, w)``, as :func:`check_rle` checks it; ``ValueError`` otherwise."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("a mask needs a COCO RLE {'size': [h, w], 'counts': ...}")
    size = rle["size"]
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and isinstance(size[0], (int, np.integer))
        and isinstance(size[1], (int, np.integer))
        and not isinstance(size[0], bool)
        and not isinstance(size[1], bool)
    ):
        raise ValueError("an RLE size must be two integers [h, w]")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0 or h * w > max_pixels:
        raise ValueError(f"an RLE size of {h} x {w} is not a usable mask size")
    return h, w


def _one(rle: Any, max_pixels: int) -> tuple[Rle, int] | ValueError:
    try:
        checked = check_rle(rle, max_pixels=max_pixels)
        counts = rle_counts(checked)
    except (ValueError, TypeError, OverflowError) as exc:
        return exc if isinstance(exc, ValueError) else ValueError(str(exc))
    return checked, int(counts[1::2].sum())


def _decoded(texts: list[str], sizes: list[tuple[int, int]]) -> list[tuple[Rle, int] | ValueError | None]:
    """The check of each compressed counts string of ``texts`` (non-empty, ASCII) for a mask of
    ``sizes[i]``; ``None`` where the exact one-by-one check must decide."""
    codes = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    string_end = np.cumsum(lengths)
    string_start = string_end - lengths
    terminal = (codes & 0x20) == 0
    # decoded here only if its characters are all COCO's and its last one ends a number
    usable = ~np.logical_or.reduceat((codes < 0) | (codes > 63), string_start) & terminal[string_end - 1]
    terminal[string_end - 1] = True  # no number straddles two strings, even a broken one
    ends = np.flatnonzero(terminal)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    digits = ends - starts + 1
    string_of = np.zeros(codes.size, dtype=np.int64)  # the string each character belongs to
    string_of[string_start[1:]] = 1
    owner = np.cumsum(string_of)[ends]  # the string each number belongs to
    usable[owner[digits > 7]] = False  # over 35 bits: the exact check says whether it is too large
    number_start = np.zeros(codes.size, dtype=np.int64)
    number_start[starts] = starts
    position = np.arange(codes.size) - np.maximum.accumulate(number_start)  # within its number
    raw = np.bitwise_or.reduceat((codes & 0x1F) << (5 * np.minimum(position, 7)), starts)
    negative = (codes[ends] & 0x10) != 0
    raw[negative] |= np.left_shift(-1, 5 * np.minimum(digits[negative], 8))
    first = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))  # each string's first number
    index = np.arange(owner.size) - first[owner]  # each number's place in its string
    odd = (index & 1) == 1
    values = raw.copy()
    for group in (odd, ~odd & (index >= 2)):  # from the fourth on: a difference from two places before
        total = np.cumsum(np.where(group, raw, 0))  # restarted per string by subtracting its start
        before = np.where(first > 0, total[np.maximum(first - 1, 0)], 0)
        values[group] = (total - before[owner])[group]
    run_sum = np.add.reduceat(values, first)
    run_min = np.minimum.reduceat(values, first)
    area = np.add.reduceat(np.where(odd, values, 0), first).tolist()
    shape = np.array(sizes, dtype=np.int64).reshape(-1, 2)
    whole = usable & (run_min >= 0) & (run_sum == shape[:, 0] * shape[:, 1])
    out: list[tuple[Rle, int] | ValueError | None] = [None] * len(texts)
    for k in np.flatnonzero(usable & ~whole).tolist():  # decided here, and broken
        h, w = sizes[k]
        if run_min[k] < 0:
            out[k] = ValueError("an RLE has negative run lengths")
        else:
            out[k] = ValueError(f"the RLE's runs cover {int(run_sum[k])} pixels, not {h} x {w}")
    good = np.flatnonzero(whole).tolist()
    remember_checked_many([(*sizes[k], texts[k]) for k in good])
    for k in good:
        h, w = sizes[k]
        out[k] = ({"size": [h, w], "counts": texts[k]}, area[k])
    return out
