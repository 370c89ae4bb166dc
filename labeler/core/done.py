"""The rule for marking an image done: only an image that can be read.

"Done" tells training that every object on the image is labelled; an image whose file is
missing, corrupt or too large cannot have been checked, so it cannot be done.
"""

from __future__ import annotations

import os

from labeler.core.images import ImageError, read_image_size


def done_refusal(path: str | os.PathLike[str], *, load_error: str | None = None) -> str | None:
    """Why the image at ``path`` cannot be marked done (one line), or ``None`` if it can.

    ``load_error`` is a failure the caller met decoding the pixels (the header may look fine).
    """
    if load_error:
        return f"Cannot mark done: the image cannot be read ({load_error})"
    try:
        read_image_size(path)
    except ImageError as exc:
        return f"Cannot mark done: {exc}"
    return None
