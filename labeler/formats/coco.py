"""COCO instances JSON (``instances_*.json``): import and export.

Import keeps the geometry the file has: polygons (one or several parts per object) become
``Kind.POLYGON``, RLE masks (compressed or uncompressed ``counts``) become ``Kind.MASK``, an
annotation with only a ``bbox`` (or whose segmentation is one axis-aligned rectangle, which is how
boxes are written out) becomes ``Kind.BOX``. ``iscrowd`` is kept. Category ids may be
non-contiguous; a category named ``_background_`` (labelme's id 0) is dropped. ``info`` and
``licenses`` are optional. ``file_name`` may carry folders.

Export writes categories ``1..N`` in the project's category order, the project's image ids and
annotation ids (stable from one export to the next), masks as compressed RLE (``masks="rle"``) or
traced polygons (``masks="polygon"``; crowd regions stay RLE as COCO requires), polygons as
polygons, and boxes as ``bbox`` with the box as a 4-vertex polygon ``segmentation`` (what
pycocotools' ``loadRes`` writes for box results, so ``COCO.annToMask`` works on every annotation).
``bbox`` is ``[x, y, w, h]`` in pixels; ``area`` is in square pixels as COCO computes it: the
polygon's area (sum of its parts' shoelace areas), the mask's pixel count, or ``w * h`` for a
box. Proposals are written only with ``include_proposals``, with their ``score``.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

import labeler
from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import (
    as_box,
    decode_rle,
    mask_to_polygons,
    normalize_rle,
    polygons_area,
    polygons_box,
)
from labeler.core.images import max_pixels_limit
from labeler.core.rle_batch import check_rles
from labeler.core.store import Project
from labeler.formats.common import (
    BACKGROUND_NAMES,
    CategoryMap,
    ExportReport,
    ImageFinder,
    ImportReport,
    Progress,
    Tally,
    Writer,
    atomic_file,
    box_polygon,
    export_selection,
    files_under,
    gc_paused,
    image_sizes,
    read_json,
)
from labeler.formats.errors import FormatError

MASK_MODES = ("rle", "polygon")
FILE_NAME_MODES = ("relative", "name")
MASKS_PER_BATCH = 4000
"""An import takes the images a batch at a time, until their RLE masks number this many: found,
added in one write, sized in one query, their masks checked in one numpy pass, then labelled (a
few thousand: well within the checks the store's door remembers, and progress is never stale)."""


# ---- import -----------------------------------------------------------------------------------


def _coco_file(source: Path) -> Path:
    if source.is_dir():
        found = [p for p in files_under(source, [".json"]) if p.parent == source]
        if len(found) != 1:
            raise FormatError(
                f"{source}: expected one COCO .json file in the folder, found {len(found)}; name the file"
            )
        return found[0]
    if not source.is_file():
        raise FormatError(f"{source}: no such file")
    return source


def _list_of(data: dict[str, Any], key: str, path: Path, *, required: bool) -> list[Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise FormatError(f"{path}: not a COCO instances file (no '{key}' list)")
        return []
    if not isinstance(value, list):
        raise FormatError(f"{path}: '{key}' must be a list, got {type(value).__name__}")
    return value


def import_coco(
    project: Project,
    source: Path,
    *,
    images_dir: Path | None = None,
    mark_done: bool = True,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a COCO instances JSON file into ``project`` (all or nothing)."""
    path = _coco_file(Path(source))
    with gc_paused():  # the document's million objects are no garbage: no collection walks them
        return _import_coco(project, path, images_dir=images_dir, mark_done=mark_done, progress=progress)


def _import_coco(
    project: Project, path: Path, *, images_dir: Path | None, mark_done: bool, progress: Progress | None
) -> ImportReport:
    data = read_json(path)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: not a COCO instances file (the top level is not an object)")
    images = _list_of(data, "images", path, required=True)
    annotations = _list_of(data, "annotations", path, required=False)
    categories = _list_of(data, "categories", path, required=bool(annotations))

    names: dict[int, str | None] = {}
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or not _is_id(c.get("id")) or not isinstance(c.get("name"), str):
            raise FormatError(f"{path}: category #{i} needs an integer 'id' and a string 'name'")
        names[c["id"]] = None if c["name"].strip() in BACKGROUND_NAMES else c["name"]

    by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, a in enumerate(annotations):
        if not isinstance(a, dict) or not _is_id(a.get("image_id")) or not _is_id(a.get("category_id")):
            raise FormatError(f"{path}: annotation #{i} needs an integer 'image_id' and 'category_id'")
        if a["category_id"] not in names:
            raise FormatError(
                f"{path}: annotation {a.get('id', '#' + str(i))} refers to category {a['category_id']!r}, "
                "which the file does not define"
            )
        by_image[a["image_id"]].append((i, a))
    image_ids = set()
    for i, im in enumerate(images):
        if not isinstance(im, dict) or not _is_id(im.get("id")) or not isinstance(im.get("file_name"), str):
            raise FormatError(f"{path}: image #{i} needs an 'id' and a 'file_name'")
        image_ids.add(im["id"])
    unknown = set(by_image) - image_ids
    if unknown:
        first = sorted(map(str, unknown))[0]
        raise FormatError(f"{path}: annotations refer to image id {first}, which the file does not list")

    tally = Tally()
    with project.transaction():
        finder = ImageFinder(project, images_dir=images_dir, tally=tally, match_first=True, add_later=True)
        cats = CategoryMap(project, tally)
        ordered = sorted(names.items(), key=lambda kv: (isinstance(kv[0], str), kv[0]))  # ids: ints, then strings
        category_ids = {cid: cats.id(name) for cid, name in ordered if name is not None}
        writer = Writer(project, tally, mark_done=mark_done)
        limit = max_pixels_limit()
        start = 0
        while start < len(images):  # a batch of images at a time: found, added, sized, then labelled
            stop, checked = _check_masks_ahead(images, start, by_image, limit)
            batch = images[start:stop]
            found = finder.add_held([finder.find(im["file_name"], bases=[path.parent]) for im in batch])
            # the stored size, else the file's own header: a declared size may be wrong (or poison)
            sizes = project.image_sizes([i for i in found if i is not None])
            writer.know_sizes(sizes)
            for n, (im, image_id) in enumerate(zip(batch, found, strict=True), start=start):
                anns = by_image.get(im["id"], [])
                if image_id is None:
                    tally.skip("image file not found", 1)
                    tally.skip("annotation of a missing image", len(anns))
                else:
                    writer.image(image_id)
                    size = sizes[image_id]
                    hw = (size[1], size[0]) if size is not None else None
                    for i, a in anns:
                        category_id = category_ids.get(a["category_id"])
                        if category_id is None:
                            tally.skip("background category")
                        else:
                            _add_label(writer, tally, a, image_id, category_id, hw, path, i, limit, checked.get(i))
                if progress is not None:
                    progress(n + 1, len(images))
            start = stop
        writer.finish("coco", path)
    return tally.import_report("coco", path)


def _add_label(
    writer: Writer,
    tally: Tally,
    a: dict[str, Any],
    image_id: int,
    category_id: int,
    size: tuple[int, int] | None,
    path: Path,
    index: int,
    max_pixels: int,
    checked: tuple[dict[str, Any], int] | ValueError | None,
) -> None:
    """Give the COCO entry ``a`` (``#index`` of the file ``path``) to the writer as a label of the
    image ``image_id`` (of ``size = (height, width)``, ``None``: unknown), or count why it is
    skipped. ``checked`` is the check of its RLE mask made ahead."""
    seg = a.get("segmentation")
    if isinstance(seg, dict):
        rle = _mask(seg, size, path, index, max_pixels, checked)
        if isinstance(rle, str):
            tally.skip(rle)
        else:
            writer.add_mask(image_id=image_id, category_id=category_id, rle=rle, iscrowd=bool(a.get("iscrowd", 0)))
        return
    made = _annotation(a, image_id, category_id, path, index)
    if isinstance(made, str):
        tally.skip(made)
    else:
        writer.add(made)


def _check_masks_ahead(
    images: list[Any],
    start: int,
    by_image: dict[Any, list[tuple[int, dict[str, Any]]]],
    max_pixels: int,
) -> tuple[int, dict[int, tuple[dict[str, Any], int] | ValueError]]:
    """Check the RLE masks of the images from ``images[start]`` on, some thousands at once
    (:func:`~labeler.core.rle_batch.check_rles`): the index of the first image left for the next
    batch, and the results by annotation index. A batch stays well under the number of checks
    remembered, so the store's door finds these masks there."""
    indices: list[int] = []
    rles: list[Any] = []
    stop = start
    while stop < len(images) and len(rles) < MASKS_PER_BATCH:
        im = images[stop]
        for i, a in by_image.get(im["id"], []):
            seg = a.get("segmentation")
            if isinstance(seg, dict):
                indices.append(i)
                rles.append(seg)
        stop += 1
    return stop, dict(zip(indices, check_rles(rles, max_pixels=max_pixels), strict=True))


def _is_id(value: Any) -> bool:
    """COCO ids are integers (strings are allowed, as some writers use them); never lists, dicts or bools."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _mask(
    seg: dict[str, Any],
    size: tuple[int, int] | None,
    path: Path,
    index: int,
    max_pixels: int,
    checked: tuple[dict[str, Any], int] | ValueError | None = None,
) -> dict[str, Any] | str:
    """The checked RLE of the COCO entry ``#index`` (of the file ``path``) whose segmentation is
    the RLE ``seg``, for an image of ``size = (height, width)`` (``None``: unknown), or the reason
    it is skipped. ``checked`` is the check of the RLE made ahead (``(rle, area)`` or the error)."""
    counts, rle_size = seg.get("counts"), seg.get("size")
    if not isinstance(counts, (str, list)) or not isinstance(rle_size, list) or len(rle_size) != 2:
        raise FormatError(f"{path}: annotation #{index}: an RLE segmentation needs 'counts' and 'size' [h, w]")
    if checked is None:
        checked = check_rles([seg], max_pixels=max_pixels)[0]
    if isinstance(checked, ValueError):
        raise FormatError(f"{path}: annotation #{index}: unreadable RLE ({checked})") from checked
    rle, area = checked
    if size is not None and rle["size"] != list(size):
        return "mask size differs from the image"
    if area == 0:
        return "empty mask"
    return rle


def _annotation(a: dict[str, Any], image_id: int, category_id: int, path: Path, index: int) -> Annotation | str:
    """The annotation for one COCO entry (``#index`` of the file ``path``) whose segmentation is
    no RLE, or the reason it is skipped."""
    seg = a.get("segmentation")
    iscrowd = bool(a.get("iscrowd", 0))
    common: dict[str, Any] = {"image_id": image_id, "category_id": category_id, "iscrowd": iscrowd}
    if isinstance(seg, list) and seg:
        flat = [seg] if all(isinstance(v, (int, float)) for v in seg) else seg
        parts = []
        for part in flat:
            if not isinstance(part, list) or not all(isinstance(v, (int, float)) for v in part):
                raise FormatError(f"{path}: annotation #{index}: a polygon must be a list of numbers")
            if len(part) >= 6 and len(part) % 2 == 0:
                try:
                    parts.append(np.asarray(part, dtype=np.float64).reshape(-1, 2))
                except OverflowError:
                    return "coordinates too large"
        if not parts:
            return "polygon with fewer than 3 vertices"
        if not all(np.isfinite(p).all() for p in parts):
            return "non-finite coordinates"
        if len(parts) == 1 and _is_rectangle(parts[0]):
            return Annotation(kind=Kind.BOX, box_xywh=polygons_box(parts), **common)
        return Annotation(kind=Kind.POLYGON, polygons=tuple(parts), **common)
    bbox = a.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
        try:
            bbox = [float(v) for v in bbox]
        except OverflowError:
            return "coordinates too large"
        if not (np.isfinite(bbox).all() and bbox[2] > 0 and bbox[3] > 0):
            return "empty box"
        return Annotation(kind=Kind.BOX, box_xywh=as_box(bbox), **common)
    return "no segmentation and no bbox"


def _is_rectangle(pts: np.ndarray) -> bool:
    """True for 4 vertices forming an axis-aligned rectangle with non-zero sides."""
    if len(pts) != 4:
        return False
    nxt = np.roll(pts, -1, axis=0)
    axis_aligned = all(a[0] == b[0] or a[1] == b[1] for a, b in zip(pts, nxt, strict=True))
    return axis_aligned and len(set(pts[:, 0])) == 2 and len(set(pts[:, 1])) == 2


def _bytes_rle(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


# ---- export -----------------------------------------------------------------------------------


def export_coco(
    project: Project,
    out: Path,
    *,
    masks: str = "rle",
    include_proposals: bool = False,
    file_names: str = "relative",
    progress: Progress | None = None,
) -> ExportReport:
    """Write the project's labels as one COCO instances JSON file ``out`` (atomically).

    ``file_names="relative"`` writes each image's path relative to ``out``'s folder (so the file
    finds its images wherever it is read from); ``"name"`` writes the bare file name.
    """
    if masks not in MASK_MODES:
        raise FormatError(f"masks must be one of {', '.join(MASK_MODES)}, got {masks!r}")
    if file_names not in FILE_NAME_MODES:
        raise FormatError(f"file_names must be one of {', '.join(FILE_NAME_MODES)}, got {file_names!r}")
    out = Path(out)
    tally = Tally()
    images, by_image = export_selection(project, include_proposals=include_proposals)
    sizes = image_sizes(project, images, by_image, tally)
    categories = project.categories()
    coco_category = {c.id: i + 1 for i, c in enumerate(categories)}
    # the project folder as seen from the output's folder; image paths join onto it lexically
    root_from_out = Path(os.path.relpath(project.root, os.path.abspath(out.parent))).as_posix()

    coco_images: list[dict[str, Any]] = []
    coco_anns: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (entry, RLE): area and bbox in one batch
    for n, record in enumerate(images):
        if record.id not in sizes:
            tally.skip("annotation of an image of unknown size", len(by_image.get(record.id, [])))
            continue
        width, height = sizes[record.id]
        if file_names == "name":
            file_name = posixpath.basename(record.path)
        else:
            file_name = posixpath.normpath(posixpath.join(root_from_out, record.path))
        coco_images.append({"id": record.id, "file_name": file_name, "width": width, "height": height})
        for ann in by_image.get(record.id, []):
            entry = _coco_entry(ann, height, width, masks, tally, pending)
            if entry is not None:
                entry["category_id"] = coco_category[ann.category_id]
                coco_anns.append(entry)
        if progress is not None and (n % 200 == 0 or n == len(images) - 1):
            progress(n + 1, len(images))
    if pending:  # pycocotools loops in C over a list: 100k masks in a fraction of a second
        coded = [rle for _, rle in pending]
        # area() of a list longer than 255 overflows inside pycocotools 2.0.11 (numpy 2): chunks
        areas = np.concatenate([mask_utils.area(coded[i : i + 255]) for i in range(0, len(coded), 255)])
        boxes = mask_utils.toBbox(coded).tolist()
        for (entry, _), area, box in zip(pending, areas.astype(np.float64).tolist(), boxes, strict=True):
            entry["bbox"] = box
            entry["area"] = area
    tally.annotations = len(coco_anns)
    document = {
        "info": {
            "description": f"exported by labeler {labeler.__version__} from {project.root.name}",
            "version": labeler.__version__,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "licenses": [],
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [{"id": coco_category[c.id], "name": c.name, "supercategory": ""} for c in categories],
    }
    text = json.dumps(document, separators=(",", ":"))  # one shot: the C encoder, 5x json.dump's speed
    with atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    return tally.export_report("coco", out, images=len(coco_images), files=1)


def _coco_entry(
    ann: Annotation,
    height: int,
    width: int,
    masks: str,
    tally: Tally,
    pending: list[tuple[dict[str, Any], dict[str, Any]]],
) -> dict[str, Any] | None:
    """One COCO annotation dict (without ``category_id``), or ``None`` if it cannot be written.

    An RLE mask's ``bbox`` and ``area`` are left to the caller: the entry and its RLE are appended
    to ``pending``.
    """
    entry: dict[str, Any] = {"id": ann.id, "image_id": ann.image_id, "iscrowd": int(ann.iscrowd)}
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        x, y, w, h = ann.box_xywh
        entry["segmentation"] = [box_polygon(ann.box_xywh)]
        entry["bbox"] = [x, y, w, h]
        entry["area"] = w * h
    elif ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        entry["segmentation"] = [p.reshape(-1).tolist() for p in ann.polygons]
        entry["bbox"] = list(polygons_box(ann.polygons))
        entry["area"] = polygons_area(ann.polygons)
    else:
        assert ann.rle is not None
        if [int(v) for v in ann.rle["size"]] != [height, width]:
            tally.skip("mask size differs from the image")
            return None
        rle = ann.rle if isinstance(ann.rle["counts"], str) else normalize_rle(ann.rle)  # the store's is
        coded = _bytes_rle(rle)
        parts = mask_to_polygons(decode_rle(rle)) if masks == "polygon" and not ann.iscrowd else []
        if parts:  # bbox and area then follow the polygon that is written
            entry["segmentation"] = [p.reshape(-1).tolist() for p in parts]
            entry["bbox"] = list(polygons_box(parts))
            entry["area"] = polygons_area(parts)
        else:
            entry["segmentation"] = rle
            entry["bbox"], entry["area"] = None, None  # keys in COCO's order; filled from pending
            pending.append((entry, coded))
    if ann.score is not None:
        entry["score"] = float(ann.score)
    if ann.attributes:
        entry["attributes"] = ann.attributes
    return entry
