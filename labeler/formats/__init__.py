"""Label formats: import into and export from a project store.

One module per format (:mod:`~labeler.formats.coco`, :mod:`~labeler.formats.labelme`,
:mod:`~labeler.formats.voc`, :mod:`~labeler.formats.yolo`, :mod:`~labeler.formats.masks`), each with
an ``import_<name>`` and an ``export_<name>`` function. This module is the one entry point the CLI
and the GUI use::

    report = import_annotations(project, "instances.json", format="coco", progress=cb)
    report = export_annotations(project, "out.json", format="coco", masks="rle")

Both are safe to run in a worker thread (the store is thread-safe). An import is one transaction:
on any error, or an exception raised by ``progress`` (how a caller cancels), the project is left as
it was. An export is built aside and moved into place only when complete. Bad input raises
:class:`~labeler.formats.errors.FormatError` with the file and the reason. No Qt, no torch here.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeler.formats.common import ExportReport, ImportReport, Progress
from labeler.formats.errors import FormatError

__all__ = [
    "FORMATS",
    "ExportReport",
    "Format",
    "FormatError",
    "ImportReport",
    "detect_format",
    "export_annotations",
    "import_annotations",
]


@dataclass(frozen=True)
class Format:
    """A label format: its name, a one-line description, and what it can do."""

    name: str
    description: str
    can_import: bool = True
    can_export: bool = True
    export_is_folder: bool = True

    def _function(self, verb: str) -> Any:
        module = importlib.import_module(f"labeler.formats.{self.name}")
        return getattr(module, f"{verb}_{self.name}")

    def options(self, verb: str) -> tuple[str, ...]:
        """Names of the format-specific keyword options of ``import`` or ``export``."""
        common = {"project", "source", "out", "images_dir", "mark_done", "progress", "include_proposals", "add_images"}
        params = inspect.signature(self._function(verb)).parameters
        return tuple(name for name in params if name not in common)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("coco", "COCO instances JSON (polygons, RLE masks, boxes)", export_is_folder=False),
        Format("labelme", "labelme JSON, one file per image"),
        Format("voc", "Pascal VOC XML boxes, one file per image"),
        Format("yolo", "YOLO text labels (boxes and polygons) with classes.txt"),
        Format("masks", "PNG label masks holding one class value per pixel"),
    )
}


def _format(name: str | None, verb: str) -> Format:
    if name is None or name not in FORMATS:
        raise FormatError(f"unknown format {name!r}; one of {', '.join(FORMATS)}")
    fmt = FORMATS[name]
    if not (fmt.can_import if verb == "import" else fmt.can_export):
        raise FormatError(f"{name} cannot {verb}")
    return fmt


def _check_options(fmt: Format, verb: str, options: dict[str, Any]) -> dict[str, Any]:
    given = {k: v for k, v in options.items() if v is not None}
    allowed = fmt.options(verb)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) or "none"
        raise FormatError(f"{fmt.name} {verb} has no option {unknown[0]!r} (options: {allowed_text})")
    return given


def import_annotations(
    project: Any,
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    mark_done: bool = True,
    progress: Progress | None = None,
    add_images: bool | None = None,
    **options: Any,
) -> ImportReport:
    """Import labels from ``source`` into ``project`` in one transaction.

    ``add_images``: whether images the labels name that are not in the project are added
    (``None``: the format's default; labelme matches the project's images and adds only when
    asked, the other formats add them).

    ``format`` is a key of :data:`FORMATS` (``None``: guessed by :func:`detect_format`).
    ``images_dir`` is where to look for images the labels name when their own paths do not
    resolve; images not yet in the project are added. Images the source labels are marked done
    unless ``mark_done`` is false. ``options`` are the format's own (``values``, ``ignore`` for
    masks).
    """
    source = Path(source)
    fmt = _format(format if format is not None else detect_format(source), "import")
    given = _check_options(fmt, "import", options)
    if add_images is not None:
        if "add_images" in inspect.signature(fmt._function("import")).parameters:
            given["add_images"] = add_images
        elif not add_images:
            raise FormatError(f"a {fmt.name} import adds the images its labels name; add_images=False is labelme's")
    report: ImportReport = fmt._function("import")(
        project,
        source,
        images_dir=Path(images_dir) if images_dir is not None else None,
        mark_done=mark_done,
        progress=progress,
        **given,
    )
    return report


def export_annotations(
    project: Any,
    out: str | os.PathLike[str],
    *,
    format: str,
    include_proposals: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> ExportReport:
    """Export the project's labels to ``out`` (a file for COCO, a folder for the others).

    Accepted labels only, unless ``include_proposals`` (proposals then carry their score where the
    format has room for it). ``options`` are the format's own (``masks="rle"|"polygon"`` and
    ``file_names`` for COCO; ``values``, ``ignore``, ``background`` for masks).
    """
    fmt = _format(format, "export")
    given = _check_options(fmt, "export", options)
    report: ExportReport = fmt._function("export")(
        project, Path(out), include_proposals=include_proposals, progress=progress, **given
    )
    return report


def detect_format(source: str | os.PathLike[str]) -> str:
    """Guess the format of ``source`` from its name and a look inside; :class:`FormatError` if unsure."""
    source = Path(source)
    if source.is_file():
        suffix = source.suffix.lower()
        if suffix == ".xml":
            return "voc"
        if suffix in (".png", ".bmp", ".tif", ".tiff"):
            return "masks"
        if suffix == ".json":
            return _json_kind(source) or _unsure(source)
        return _unsure(source)
    if not source.is_dir():
        raise FormatError(f"{source}: no such file or folder")
    names = {p.name for p in source.iterdir()}
    if "mapping.json" in names:
        return "masks"
    if names & {"classes.txt", "obj.names", "data.yaml", "dataset.yaml"} or (source / "labels").is_dir():
        return "yolo"
    suffixes = {Path(n).suffix.lower() for n in names}
    if ".xml" in suffixes:
        return "voc"
    if ".json" in suffixes:
        kinds = {_json_kind(source / n) for n in sorted(names)[:50] if n.lower().endswith(".json")}
        if "labelme" in kinds:
            return "labelme"
        if kinds == {"coco"}:
            return "coco"
    if suffixes & {".png"} and not suffixes & {".jpg", ".jpeg", ".json", ".xml", ".txt"}:
        return "masks"
    return _unsure(source)


def _json_kind(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and "shapes" in data:
        return "labelme"
    if isinstance(data, dict) and "images" in data:
        return "coco"
    return None


def _unsure(source: Path) -> str:
    raise FormatError(f"{source}: cannot tell its format; give one of {', '.join(FORMATS)}")
