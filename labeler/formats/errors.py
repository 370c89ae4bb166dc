"""The one error type of :mod:`labeler.formats`."""

from __future__ import annotations


class FormatError(Exception):
    """A label file that cannot be read or written: the message names the file and the reason.

    Raised before anything is kept: an import that fails leaves the project as it was, an export
    that fails leaves no half-written output.
    """
