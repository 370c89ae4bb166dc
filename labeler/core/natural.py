"""Natural order of file names: ``img2`` before ``img10``, as file managers sort them."""

from __future__ import annotations

import re

_PARTS = re.compile(r"(\d+)")

NaturalKey = tuple[list[str | int], str, str]


def natural_key(name: str) -> NaturalKey:
    """A sort key that compares runs of digits as numbers and the rest case-insensitively
    (``"a/img2.png" < "a/img10.png" < "b/img1.png"``, ``"x.png" < "x1.png"``; ties keep a fixed
    order by the exact text).

    The stem split at its digit runs alternates text and number (text first, possibly empty), so
    two keys compare text with text and number with number at every position; the end of a stem
    sorts before any more of it. One regular-expression split per name and no per-part Python
    work: a million paths sort in seconds."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or "/" in suffix:
        stem, suffix = name, ""
    parts: list[str | int] = _PARTS.split(stem.casefold())
    parts[1::2] = map(int, parts[1::2])
    return parts, suffix.casefold(), name
