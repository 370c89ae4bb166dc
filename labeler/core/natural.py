"""Natural order of file names: ``img2`` before ``img10``, as file managers sort them."""

from __future__ import annotations

import re

_PARTS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that compares runs of digits as numbers and the rest case-insensitively
    (``"a/img2.png" < "a/img10.png" < "b/img1.png"``, ``"x.png" < "x1.png"``; ties keep a fixed order by the exact text)."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or "/" in suffix:
        stem, suffix = name, ""
    parts: list[tuple[int, int | str]] = []
    for n, part in enumerate(_PARTS.split(stem)):
        if n % 2:
            parts.append((0, int(part)))
        elif part:
            parts.append((1, part.casefold()))
    parts.append((-1, suffix.casefold()))  # the end of the stem sorts before any more of it
    parts.append((3, name))
    return tuple(parts)
