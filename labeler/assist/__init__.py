"""Assisted mask tools without Qt: box to mask with click refinement (GrabCut), edge-snapping
outlines (intelligent scissors), and taking one region of a mask. Everything works on a window
around the object, never the whole image; the canvas calls these off the UI thread and the click
benchmark (``benchmarks/bench_assist.py``) calls them directly."""

from labeler.assist.grabcut import Click, MaskResult, Prepared, ProbabilityFn, prepare, segment
from labeler.assist.regions import region_at, region_count
from labeler.assist.scissors import simplify, snap_path
from labeler.assist.window import ImagePixels, PixelSource, PyramidPixels, Window, box_window, read_window

__all__ = [
    "Click",
    "ImagePixels",
    "MaskResult",
    "PixelSource",
    "Prepared",
    "ProbabilityFn",
    "PyramidPixels",
    "Window",
    "box_window",
    "prepare",
    "read_window",
    "region_at",
    "region_count",
    "segment",
    "simplify",
    "snap_path",
]
