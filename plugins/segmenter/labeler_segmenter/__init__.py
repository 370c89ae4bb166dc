"""labeler's segmenter plugin (entry point ``segmenter`` in the group ``labeler.plugins``)."""

from labeler_segmenter.plugin import SETTINGS, SegmenterPlugin

__all__ = ["SETTINGS", "SegmenterPlugin"]
