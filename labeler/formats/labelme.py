"""labelme JSON (one file per image): import and export.

Import mapping, shape by shape (labelme 3.x to 5.x files, with or without
``imageHeight``/``imageWidth``; ``imageData`` is never used, the image file is):

- ``rectangle`` → ``Kind.BOX`` (the two corners in any order);
- ``polygon`` → ``Kind.POLYGON``; ``circle`` (centre and a point on the rim) → a polygon whose
  vertices lie on the circle about 2 px apart (32 at least);
- ``mask`` (a base64 PNG of the crop whose top-left pixel is ``points[0]``) → ``Kind.MASK``;
- ``line``, ``linestrip``, ``point``, ``points`` have no area: they are skipped and counted in the
  report's ``skipped`` (the store has no kind for them);
- shapes sharing a ``label`` and a non-null ``group_id`` are one object (as labelme's own
  ``labelme2coco`` reads them): their parts become one polygon, or one mask if any part is a mask;
  ``group_id`` is kept on the annotation;
- the label ``__ignore__`` adds its area to the image's ignore mask (:meth:`Project.set_ignore_mask`);
- a shape's ``flags`` (when any is set) and ``description`` go to the annotation's ``attributes``.
  Image-level ``flags`` have no place in the store: images with a flag set are counted as skipped.

Export writes ``<out>/<image path without suffix>.json`` per image with ``imagePath`` relative to
that file and ``imageData: null``: boxes as rectangles, polygons as one polygon shape per part
(parts of one annotation share a ``group_id``), masks as ``mask`` shapes, and the ignore mask as an
``__ignore__`` mask shape.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import decode_rle, encode_mask, polygons_to_mask, rle_box
from labeler.core.images import ImageError, open_checked
from labeler.core.store import Project
from labeler.formats import common
from labeler.formats.common import CategoryMap, ImageFinder, Tally, Writer
from labeler.formats.errors import FormatError

IGNORE_LABEL = "__ignore__"
NO_AREA = frozenset({"line", "linestrip", "point", "points"})
LABELME_VERSION = "5.5.0"

# One parsed shape: ("box", (x, y, w, h)) | ("polygon", (N, 2) array) | ("mask", (h, w) bool array)
Geometry = tuple[str, Any]


# ---- import -----------------------------------------------------------------------------------


def import_labelme(
    project: Project,
    source: Path,
    *,
    images_dir: Path | None = None,
    mark_done: bool = True,
    progress: common.Progress | None = None,
    add_images: bool = False,
) -> common.ImportReport:
    """Import a labelme JSON file, or every labelme JSON file under a folder (all or nothing).

    Each file's image is matched to the project's images, by relative path, then by file name;
    images not in the project are added only with ``add_images`` (else skipped and counted).
    """
    return common.import_per_file(
        project,
        source,
        format_name="labelme",
        suffix=".json",
        import_file=_import_file,
        images_dir=images_dir,
        mark_done=mark_done,
        progress=progress,
        add_images=add_images,
        match_first=True,
    )


def _import_file(
    project: Project, path: Path, finder: ImageFinder, cats: CategoryMap, writer: Writer, tally: Tally
) -> None:
    data = common.read_json(path)
    if not isinstance(data, dict) or "shapes" not in data:
        tally.skip("JSON file that is not labelme's")
        return
    shapes = data["shapes"]
    if not isinstance(shapes, list):
        raise FormatError(f"{path}: 'shapes' must be a list")
    image_path = data.get("imagePath")
    image_id = finder.find(image_path, bases=[path.parent]) if isinstance(image_path, str) else None
    if image_id is None and finder.add_images:
        image_id = finder.find_stem(path.stem, bases=[path.parent])
    if image_id is None:
        if finder.add_images:
            tally.skip("image file not found")
        tally.skip("shape of a missing image", len(shapes))
        return
    writer.image(image_id)
    size = _size(project, finder, image_id, data)
    flags = data.get("flags")
    if isinstance(flags, dict) and any(flags.values()):
        tally.skip("image-level flags (not kept)")

    groups: dict[Any, list[tuple[Geometry, dict[str, Any]]]] = {}
    ignore: list[Geometry] = []
    for i, shape in enumerate(shapes):
        where = f"{path}: shape #{i}"
        label, geometry = _parse_shape(shape, size, where, tally)
        if geometry is None:
            continue
        if label == IGNORE_LABEL:
            ignore.append(geometry)
            continue
        group_id = shape.get("group_id")
        key = (label, group_id) if isinstance(group_id, int) else (label, None, i)
        groups.setdefault(key, []).append((geometry, shape))
    for key, members in groups.items():
        ann = _annotation(image_id, cats.id(key[0]), key[1], members, size)
        if isinstance(ann, str):
            tally.skip(ann)
        else:
            writer.add(ann)
    if ignore:
        if size is None:
            tally.skip("__ignore__ shape on an image of unknown size", len(ignore))
        else:
            _add_ignore(project, image_id, ignore, size)
            tally.ignore_masks += 1


def _size(project: Project, finder: ImageFinder, image_id: int, data: dict[str, Any]) -> tuple[int, int] | None:
    """``(height, width)``: stored, else the file's ``imageHeight``/``imageWidth``, else the image header."""
    record = project.image(image_id)
    if record.width is not None and record.height is not None:
        return record.height, record.width
    found = finder.size(image_id)
    return (found[1], found[0]) if found is not None else None


def _points(shape: dict[str, Any], where: str) -> np.ndarray:
    pts = shape.get("points")
    try:
        arr = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FormatError(f"{where}: 'points' must be a list of [x, y]") from exc
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise FormatError(f"{where}: 'points' must be a list of [x, y]")
    return arr


def _parse_shape(shape: Any, size: tuple[int, int] | None, where: str, tally: Tally) -> tuple[str, Geometry | None]:
    """The shape's label and geometry; ``None`` geometry (counted in ``tally``) if it has none."""
    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
        raise FormatError(f"{where}: a shape needs a string 'label'")
    label = shape["label"]
    kind = shape.get("shape_type") or "polygon"
    if not isinstance(kind, str):
        raise FormatError(f"{where}: 'shape_type' must be a string")
    pts = _points(shape, where)
    if not np.isfinite(pts).all():
        tally.skip("non-finite coordinates")
        return label, None
    if kind in NO_AREA:
        tally.skip(f"{kind} shape (no area)")
        return label, None
    if kind == "rectangle":
        if len(pts) < 2:
            raise FormatError(f"{where}: a rectangle needs 2 points")
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        if x1 <= x0 or y1 <= y0:
            tally.skip("empty rectangle")
            return label, None
        return label, ("box", (float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
    if kind == "polygon":
        if len(pts) < 3:
            tally.skip("polygon with fewer than 3 vertices")
            return label, None
        return label, ("polygon", pts)
    if kind == "circle":
        if len(pts) != 2:
            raise FormatError(f"{where}: a circle needs 2 points (centre and rim)")
        return label, ("polygon", circle_polygon(pts[0], float(np.hypot(*(pts[1] - pts[0])))))
    if kind == "mask":
        if size is None:
            tally.skip("mask shape on an image of unknown size")
            return label, None
        return label, ("mask", _mask_from_shape(shape, pts, size, where))
    tally.skip(f"unknown shape type {kind!r}")
    return label, None


def circle_polygon(centre: np.ndarray, radius: float) -> np.ndarray:
    """A polygon approximating the circle: vertices on the rim about 2 px apart, 32 at least."""
    n = max(32, min(720, math.ceil(2 * math.pi * radius / 2)))
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=1)


def _mask_from_shape(shape: dict[str, Any], pts: np.ndarray, size: tuple[int, int], where: str) -> np.ndarray:
    """The full-image mask of a ``mask`` shape: its PNG crop placed with its top-left at ``points[0]``."""
    text = shape.get("mask")
    if not isinstance(text, str) or len(pts) < 1:
        raise FormatError(f"{where}: a mask shape needs 'points' and a base64 PNG 'mask'")
    try:
        with open_checked(io.BytesIO(base64.b64decode(text, validate=False)), what="mask") as im:
            crop = np.asarray(im.convert("L")) > 0
    except ImageError as exc:
        raise FormatError(
            f"{where}: the 'mask' is not a base64 PNG within the pixel limit ({str(exc).split(': ', 1)[-1]})"
        ) from exc
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as exc:
        raise FormatError(f"{where}: the 'mask' is not a base64 PNG ({type(exc).__name__})") from exc
    height, width = size
    full = np.zeros((height, width), dtype=bool)
    if np.abs(pts[0]).max() > 1e7:
        raise FormatError(f"{where}: a mask shape's first point lies far outside the image")
    x0, y0 = int(pts[0][0]), int(pts[0][1])
    ys, xs = slice(max(0, y0), min(height, y0 + crop.shape[0])), slice(max(0, x0), min(width, x0 + crop.shape[1]))
    full[ys, xs] = crop[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return full


def _annotation(
    image_id: int,
    category_id: int,
    group_id: int | None,
    members: list[tuple[Geometry, dict[str, Any]]],
    size: tuple[int, int] | None,
) -> Annotation | str:
    """One annotation from the shapes of one object, or why it is skipped."""
    attributes: dict[str, Any] = {}
    for _geometry, shape in members:
        if isinstance(shape.get("flags"), dict) and any(shape["flags"].values()):
            attributes.setdefault("flags", {}).update(shape["flags"])
        if isinstance(shape.get("description"), str) and shape["description"]:
            attributes["description"] = shape["description"]
    if len(members) == 1 and members[0][1].get("shape_type") == "circle":
        attributes["shape_type"] = "circle"
    common: dict[str, Any] = {
        "image_id": image_id,
        "category_id": category_id,
        "group_id": group_id,
        "attributes": attributes,
    }
    kinds = {geometry[0] for geometry, _ in members}
    if len(members) == 1 and kinds == {"box"}:
        return Annotation(kind=Kind.BOX, box_xywh=members[0][0][1], **common)
    if "mask" not in kinds:
        parts = [_as_polygon(geometry) for geometry, _ in members]
        return Annotation(kind=Kind.POLYGON, polygons=tuple(parts), **common)
    if size is None:
        return "mask on an image of unknown size"
    union = np.zeros(size, dtype=bool)
    for geometry, _ in members:
        union |= _as_mask(geometry, size)
    if not union.any():
        return "empty mask"
    return Annotation(kind=Kind.MASK, rle=encode_mask(union), **common)


def _as_polygon(geometry: Geometry) -> np.ndarray:
    kind, value = geometry
    if kind == "box":
        x, y, w, h = value
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def _as_mask(geometry: Geometry, size: tuple[int, int]) -> np.ndarray:
    kind, value = geometry
    if kind == "mask":
        return np.asarray(value, dtype=bool)
    return polygons_to_mask([_as_polygon(geometry)], size[0], size[1])


def _add_ignore(project: Project, image_id: int, shapes: list[Geometry], size: tuple[int, int]) -> None:
    union = np.zeros(size, dtype=bool)
    existing = project.ignore_mask(image_id)
    if existing is not None and [int(v) for v in existing["size"]] == list(size):
        union |= decode_rle(existing)
    for geometry in shapes:
        union |= _as_mask(geometry, size)
    project.set_ignore_mask(image_id, encode_mask(union))


# ---- export -----------------------------------------------------------------------------------


def export_labelme(
    project: Project, out: Path, *, include_proposals: bool = False, progress: common.Progress | None = None
) -> common.ExportReport:
    """Write one labelme JSON per image into the folder ``out`` (built aside, then moved in)."""
    names = {c.id: c.name for c in project.categories()}
    out_abs = Path(os.path.abspath(out))

    def export_image(image: common.ExportImage, path: Path, tally: Tally) -> None:
        width, height = image.width, image.height
        shapes = _shapes(image.annotations, names, height, width, tally)
        ignore = project.ignore_mask(image.record.id)
        if ignore is not None and [int(v) for v in ignore["size"]] == [height, width]:
            shapes.append(_mask_shape(IGNORE_LABEL, decode_rle(ignore), None, {}))
        target = out_abs / (image.key + ".json")
        document: dict[str, Any] = {
            "version": LABELME_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": Path(os.path.relpath(project.root / image.record.path, target.parent)).as_posix(),
            "imageData": None,
            "imageHeight": height,
            "imageWidth": width,
        }
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")

    return common.export_per_image(
        project,
        out,
        format_name="labelme",
        suffix=".json",
        export_image=export_image,
        include_proposals=include_proposals,
        progress=progress,
    )


def _shapes(
    anns: list[Annotation], names: dict[int, str], height: int, width: int, tally: Tally
) -> list[dict[str, Any]]:
    taken = {a.group_id for a in anns if a.group_id is not None}
    next_group = max(taken, default=-1) + 1
    shapes: list[dict[str, Any]] = []
    for ann in anns:
        label = names[ann.category_id]
        if ann.kind is Kind.BOX:
            assert ann.box_xywh is not None
            x, y, w, h = ann.box_xywh
            shapes.append(_shape(label, [[x, y], [x + w, y + h]], "rectangle", ann.group_id, ann.attributes))
        elif ann.kind is Kind.POLYGON:
            assert ann.polygons is not None
            group = ann.group_id
            if group is None and len(ann.polygons) > 1:
                group, next_group = next_group, next_group + 1
            for part in ann.polygons:
                shapes.append(_shape(label, part.tolist(), "polygon", group, ann.attributes))
        else:
            assert ann.rle is not None
            if [int(v) for v in ann.rle["size"]] != [height, width]:
                tally.skip("mask size differs from the image")
                continue
            shapes.append(_mask_shape(label, decode_rle(ann.rle), ann.group_id, ann.attributes))
        tally.annotations += 1
    return shapes


def _shape(
    label: str, points: list[list[float]], kind: str, group: int | None, attributes: dict[str, Any]
) -> dict[str, Any]:
    return {
        "label": label,
        "points": [[common.number(x), common.number(y)] for x, y in points],
        "group_id": group,
        "description": str(attributes.get("description", "")),
        "shape_type": kind,
        "flags": dict(attributes.get("flags", {})),
        "mask": None,
    }


def _mask_shape(label: str, mask: np.ndarray, group: int | None, attributes: dict[str, Any]) -> dict[str, Any]:
    """A labelme ``mask`` shape: ``points`` are the first and last pixel of the crop (inclusive)."""
    x, y, w, h = (int(v) for v in rle_box(encode_mask(mask)))
    crop = mask[y : y + max(h, 1), x : x + max(w, 1)]
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG")
    shape = _shape(label, [[x, y], [x + max(w, 1) - 1, y + max(h, 1) - 1]], "mask", group, attributes)
    shape["mask"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return shape
