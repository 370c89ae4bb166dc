"""Pascal VOC XML (one ``<annotation>`` file per image, boxes only): import and export.

Coordinates: ``xmin, ymin, xmax, ymax`` are read and written as continuous pixel coordinates
(``box_xywh = (xmin, ymin, xmax - xmin, ymax - ymin)``), as labelImg, labelme and torchvision
treat them; the ``+1`` of VOC's original 1-based inclusive convention is not applied, so files
round-trip exactly. ``difficult``, ``truncated``, ``occluded`` and ``pose`` are kept in the
annotation's ``attributes`` when they say something.

On export polygons and masks are written as their tight boxes. Files go to
``<out>/<image path without suffix>.xml``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import annotation_box
from labeler.core.store import Project
from labeler.formats import common
from labeler.formats.common import CategoryMap, ImageFinder, Tally, Writer
from labeler.formats.errors import FormatError

KEPT_FLAGS = ("difficult", "truncated", "occluded")


# ---- import -----------------------------------------------------------------------------------


def import_voc(
    project: Project,
    source: Path,
    *,
    images_dir: Path | None = None,
    mark_done: bool = True,
    progress: common.Progress | None = None,
) -> common.ImportReport:
    """Import a VOC XML file, or every one under a folder (all or nothing).

    An image the project already holds is matched first (by relative path, then by file name), so
    labels for a project's own images never add a second copy of them; others are looked for as
    the file names them, then in ``images_dir``, then beside the XML and
    in the ``JPEGImages``/``images`` folder next to the XML's folder (VOC's own layout).
    """
    return common.import_per_file(
        project,
        source,
        format_name="voc",
        suffix=".xml",
        import_file=_import_file,
        images_dir=images_dir,
        mark_done=mark_done,
        progress=progress,
        match_first=True,
    )


def _parse(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FormatError(f"{path}: not valid XML ({exc})") from exc
    except RecursionError as exc:
        raise FormatError(f"{path}: XML nested too deeply to read") from exc
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read ({type(exc).__name__})") from exc


def _float(element: ET.Element | None, tag: str, where: str) -> float:
    text = element.findtext(tag) if element is not None else None
    try:
        return float((text or "").strip())
    except ValueError as exc:
        shown = text if text is None or len(text) <= 40 else text[:40] + "…"
        raise FormatError(f"{where}: <{tag}> must be a number, got {shown!r}") from exc


def _import_file(
    project: Project, path: Path, finder: ImageFinder, cats: CategoryMap, writer: Writer, tally: Tally
) -> None:
    root = _parse(path)
    if root.tag != "annotation":
        tally.skip("XML file that is not a VOC annotation")
        return
    objects = root.findall("object")
    bases = [path.parent, path.parent.parent / "JPEGImages", path.parent.parent / "images"]
    name = (root.findtext("filename") or "").strip()
    image_id = finder.find(name, bases=bases) if name else None
    if image_id is None and (root.findtext("path") or "").strip():
        image_id = finder.find((root.findtext("path") or "").strip(), bases=bases)
    if image_id is None:
        image_id = finder.find_stem(path.stem, bases=bases)
    if image_id is None:
        tally.skip("image file not found")
        tally.skip("object of a missing image", len(objects))
        return
    writer.image(image_id)
    # the image's size comes from its own header (Writer reads it): a declared <size> may be wrong
    for i, obj in enumerate(objects):
        where = f"{path}: object #{i}"
        label = (obj.findtext("name") or "").strip()
        if not label:
            raise FormatError(f"{where}: an object needs a <name>")
        box = obj.find("bndbox")
        if box is None:
            tally.skip("object without <bndbox>")
            continue
        x0, y0 = _float(box, "xmin", where), _float(box, "ymin", where)
        x1, y1 = _float(box, "xmax", where), _float(box, "ymax", where)
        if not (x1 > x0 and y1 > y0):
            tally.skip("empty box")
            continue
        attributes: dict[str, Any] = {}
        for flag in KEPT_FLAGS:
            text = (obj.findtext(flag) or "").strip()
            if text in ("1", "true", "True"):
                attributes[flag] = True
        pose = (obj.findtext("pose") or "").strip()
        if pose and pose != "Unspecified":
            attributes["pose"] = pose
        writer.add(
            Annotation(
                image_id=image_id,
                category_id=cats.id(label),
                kind=Kind.BOX,
                box_xywh=(x0, y0, x1 - x0, y1 - y0),
                attributes=attributes,
            )
        )


# ---- export -----------------------------------------------------------------------------------


def export_voc(
    project: Project, out: Path, *, include_proposals: bool = False, progress: common.Progress | None = None
) -> common.ExportReport:
    """Write one VOC XML per image into the folder ``out`` (built aside, then moved in)."""
    names = {c.id: c.name for c in project.categories()}

    def export_image(image: common.ExportImage, path: Path, tally: Tally) -> None:
        image_path = (project.root / image.record.path).resolve()
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = image_path.parent.name
        ET.SubElement(root, "filename").text = image_path.name
        ET.SubElement(root, "path").text = os.fspath(image_path)
        ET.SubElement(ET.SubElement(root, "source"), "database").text = "labeler"
        size = ET.SubElement(root, "size")
        ET.SubElement(size, "width").text = str(image.width)
        ET.SubElement(size, "height").text = str(image.height)
        ET.SubElement(size, "depth").text = "3"
        ET.SubElement(root, "segmented").text = "0"
        for ann in image.annotations:
            _object(root, ann, names[ann.category_id])
            tally.annotations += 1
        ET.indent(root)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)

    return common.export_per_image(
        project,
        out,
        format_name="voc",
        suffix=".xml",
        export_image=export_image,
        include_proposals=include_proposals,
        progress=progress,
    )


def _object(root: ET.Element, ann: Annotation, label: str) -> None:
    x, y, w, h = annotation_box(ann)
    obj = ET.SubElement(root, "object")
    ET.SubElement(obj, "name").text = label
    ET.SubElement(obj, "pose").text = str(ann.attributes.get("pose", "Unspecified"))
    ET.SubElement(obj, "truncated").text = "1" if ann.attributes.get("truncated") else "0"
    ET.SubElement(obj, "difficult").text = "1" if ann.attributes.get("difficult") else "0"
    if ann.score is not None:
        ET.SubElement(obj, "score").text = f"{ann.score:.6g}"
    box = ET.SubElement(obj, "bndbox")
    for tag, value in (("xmin", x), ("ymin", y), ("xmax", x + w), ("ymax", y + h)):
        ET.SubElement(box, tag).text = str(common.number(value))
