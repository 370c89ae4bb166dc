"""What may be opened as an image file: regular files only, checked without opening them.

A named pipe blocks whoever opens it until a writer comes (for ever, in a folder of photos), and a
device such as ``/dev/zero`` never ends; both can sit in an images folder under an image's name,
or behind a symlink. ``stat`` tells them apart without opening anything.
"""

from __future__ import annotations

import os
import stat


class NotAFileError(OSError):
    """The path is not a regular file (a folder, pipe, device or socket), or cannot be looked at."""


def check_regular_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`NotAFileError` (or ``FileNotFoundError``) unless ``path`` is a regular file,
    symlinks followed; never opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise
    except OSError as exc:  # a symlink loop, a name too long, no permission
        raise NotAFileError(f"{os.fspath(path)}: cannot be looked at ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        kind = "a folder"
    elif stat.S_ISFIFO(mode):
        kind = "a named pipe"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = "a special file"
    raise NotAFileError(f"{os.fspath(path)}: is {kind}, not an image file (it is never opened)")


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (symlinks followed); ``False`` for anything else:
    folders, pipes, devices, broken or looping symlinks, names the file system refuses (too long,
    NUL bytes) and anything that cannot be looked at."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        return False
