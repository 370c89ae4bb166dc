"""YOLO text labels (detection boxes and segmentation polygons): import and export.

One ``.txt`` per image, one object per line, coordinates normalised to the image (0..1, origin
top-left): a box is ``class cx cy w h``; a polygon is ``class x1 y1 x2 y2 ... xn yn`` (n >= 3).
A line of 6 numbers is a box followed by a confidence (which is dropped). ``class`` is a 0-based
index into the class names, read from ``classes.txt`` or the ``names`` of ``data.yaml`` /
``dataset.yaml``; without either, classes are named by their index.

Export layout (``out`` is a folder)::

    out/classes.txt          one class name per line, in the project's category order
    out/data.yaml            nc and names, for Ultralytics-style trainers
    out/labels/<key>.txt     one per image; <key> is the image path without suffix (relative to
                             the images' common folder); an empty file is an image with no object

Polygons are written one line per part; masks are traced to polygons (one line per outer
contour); crowd regions have no YOLO form and are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from labeler.core.annotation import Annotation, Kind
from labeler.core.files import is_regular_file
from labeler.core.geometry import decode_rle, mask_to_polygons
from labeler.core.store import Project
from labeler.formats import common
from labeler.formats.common import CategoryMap, ImageFinder, Tally, Writer
from labeler.formats.errors import FormatError

CLASS_FILES = ("classes.txt", "obj.names")
YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


# ---- class names ------------------------------------------------------------------------------


def read_class_names(folder: Path) -> list[str] | None:
    """Class names from ``classes.txt`` (or ``obj.names``), else a YAML ``names:``; ``None`` if none."""
    for candidate in (folder, folder.parent):
        for name in CLASS_FILES:
            path = candidate / name
            if is_regular_file(path):
                lines = [line.strip() for line in _text(path).splitlines()]
                return [line for line in lines if line]
        for name in YAML_FILES:
            path = candidate / name
            if is_regular_file(path):
                names = _yaml_names(path)
                if names is not None:
                    return names
    return None


def _text(path: Path, *, limit: int = 16 << 20) -> str:
    """A small UTF-8 text file's contents; :class:`FormatError` (never quoting it) otherwise."""
    try:
        if path.stat().st_size > limit:
            raise FormatError(f"{path}: too large for a label file")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text") from exc
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from exc


def _yaml_names(path: Path) -> list[str] | None:
    """The ``names`` of a YOLO data YAML (read with ``yaml.safe_load``): a list, or a mapping of
    the indices 0..N-1 to names; ``None`` if the file has no ``names``."""
    try:
        data = yaml.safe_load(_text(path, limit=1 << 20))
    except yaml.YAMLError as exc:
        raise FormatError(f"{path}: not valid YAML ({type(exc).__name__})") from exc
    except RecursionError as exc:
        raise FormatError(f"{path}: YAML nested too deeply to read") from exc
    if not isinstance(data, dict) or "names" not in data:
        return None
    names = data["names"]
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise FormatError(f"{path}: names must be indexed by integers")
        if sorted(names) != list(range(len(names))):
            raise FormatError(f"{path}: names must be numbered 0..{len(names) - 1}")
        names = [names[k] for k in range(len(names))]
    if not isinstance(names, list) or not all(
        isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in names
    ):
        raise FormatError(f"{path}: names must be a list of class names or a mapping 0: name, 1: name...")
    return [str(n).strip() for n in names]


# ---- import -----------------------------------------------------------------------------------


def import_yolo(
    project: Project,
    source: Path,
    *,
    images_dir: Path | None = None,
    mark_done: bool = True,
    progress: common.Progress | None = None,
) -> common.ImportReport:
    """Import a YOLO label folder (``source/labels/**.txt`` or ``source/**.txt``), all or nothing.

    Each label file pairs with the image of the same path without suffix, looked for under
    ``images_dir``, ``source/images`` and ``source``'s sibling ``images`` folder, then among the
    project's images by file stem.
    """
    source = Path(source)
    if not source.is_dir():
        raise FormatError(f"{source}: a YOLO source is a folder (with classes.txt and labels/)")
    labels_root = source / "labels" if (source / "labels").is_dir() else source
    names = read_class_names(source) or read_class_names(labels_root)
    files = sorted(
        p
        for p in labels_root.rglob("*.txt")
        if p.name not in CLASS_FILES and not p.name.startswith(".") and p.name != "README.txt"
    )
    outside = [p for p in files if not common.inside(p, [source]) or not is_regular_file(p)]
    files = [p for p in files if p not in set(outside)]
    if not files:
        raise FormatError(
            f"{source}: no YOLO label files (.txt) found"
            + (f" ({len(outside)} links out of the folder or not regular files, not read)" if outside else "")
        )
    bases = [source / "images", labels_root.parent / "images", source]
    tally = Tally()
    tally.skip("label file that links out of the folder or is not a regular file (not read)", len(outside))

    def import_file(
        project: Project, path: Path, finder: ImageFinder, cats: CategoryMap, writer: Writer, tally: Tally
    ) -> None:
        lines = _read_lines(path)
        image_id = finder.find_stem(common.key_of(path, labels_root), bases=bases)
        if image_id is None:
            tally.skip("image file not found")
            tally.skip("object of a missing image", len(lines))
            return
        writer.image(image_id)
        size = finder.size(image_id)
        if size is None:
            tally.skip("object on an unreadable image", len(lines))
            return
        for line_no, values in lines:
            writer.add(_annotation(values, image_id, size, names, cats, f"{path}:{line_no}"))

    return common.import_per_file(
        project,
        source,
        format_name="yolo",
        suffix=".txt",
        import_file=import_file,
        images_dir=images_dir,
        mark_done=mark_done,
        progress=progress,
        files=files,
        tally=tally,
    )


def _read_lines(path: Path) -> list[tuple[int, list[float]]]:
    out = []
    text = _text(path)
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError as exc:  # the line is not quoted: the file may be anything
            raise FormatError(f"{path}:{line_no}: expected numbers separated by spaces") from exc
        if not np.isfinite(values).all():
            raise FormatError(f"{path}:{line_no}: non-finite number")
        out.append((line_no, values))
    return out


def _annotation(
    values: list[float],
    image_id: int,
    size: tuple[int, int],
    names: list[str] | None,
    cats: CategoryMap,
    where: str,
) -> Annotation:
    width, height = size
    index = values[0]
    if not index.is_integer() or index < 0:
        raise FormatError(f"{where}: the class must be a non-negative integer, got {index:g}")
    if names is not None and int(index) >= len(names):
        raise FormatError(f"{where}: class {int(index)} is not in the class names (0..{len(names) - 1})")
    category_id = cats.id(names[int(index)] if names is not None else str(int(index)))
    coords = values[1:]
    if len(coords) in (4, 5):
        cx, cy, w, h = coords[:4]
        if w <= 0 or h <= 0:
            raise FormatError(f"{where}: a box needs a positive width and height")
        box = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
        return Annotation(image_id=image_id, category_id=category_id, kind=Kind.BOX, box_xywh=box)
    if len(coords) >= 6 and len(coords) % 2 == 0:
        pts = np.asarray(coords, dtype=np.float64).reshape(-1, 2) * [width, height]
        return Annotation(image_id=image_id, category_id=category_id, kind=Kind.POLYGON, polygons=(pts,))
    raise FormatError(
        f"{where}: expected 'class cx cy w h' or 'class x1 y1 ... xn yn' (n >= 3), got {len(values)} numbers"
    )


# ---- export -----------------------------------------------------------------------------------


def export_yolo(
    project: Project, out: Path, *, include_proposals: bool = False, progress: common.Progress | None = None
) -> common.ExportReport:
    """Write ``classes.txt``, ``data.yaml`` and ``labels/<key>.txt`` into the folder ``out``."""
    categories = project.categories()
    index = {c.id: i for i, c in enumerate(categories)}
    yaml = [f"nc: {len(categories)}", "names:"] + [f"  {i}: {json.dumps(c.name)}" for i, c in enumerate(categories)]

    def export_image(image: common.ExportImage, path: Path, tally: Tally) -> None:
        lines: list[str] = []
        for ann in image.annotations:
            written = _lines(ann, index[ann.category_id], image.width, image.height, tally)
            lines += written
            tally.annotations += bool(written)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    return common.export_per_image(
        project,
        out,
        format_name="yolo",
        suffix=".txt",
        folder="labels",
        files={"classes.txt": "".join(c.name + "\n" for c in categories), "data.yaml": "\n".join(yaml) + "\n"},
        export_image=export_image,
        include_proposals=include_proposals,
        progress=progress,
    )


def _lines(ann: Annotation, cls: int, width: int, height: int, tally: Tally) -> list[str]:
    if ann.iscrowd:
        tally.skip("crowd region (no YOLO form)")
        return []
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        x, y, w, h = ann.box_xywh
        return [f"{cls} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"]
    if ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        parts = list(ann.polygons)
    else:
        assert ann.rle is not None
        if [int(v) for v in ann.rle["size"]] != [height, width]:
            tally.skip("mask size differs from the image")
            return []
        parts = mask_to_polygons(decode_rle(ann.rle))
        if not parts:
            tally.skip("mask too small to trace")
            return []
    scale = np.array([width, height], dtype=np.float64)
    return [f"{cls} " + " ".join(f"{v:.6f}" for v in (part / scale).ravel()) for part in parts]
