"""Label masks: a folder of PNGs holding one class value per pixel (semantic segmentation).

Import pairs each label PNG with the image of the same name without suffix (``label/3.png`` with
``image/3.png`` or ``3.jpg``). ``values`` maps pixel values to class names
(``{0: "membrane", 255: "cell"}``, on the command line ``0=membrane,255=cell``, or a file of
class names, one per line, for values 0, 1, ...; a class named ``_background_`` is background);
without it, every value present becomes a category named by its number (``"0"``, ``"1"``...),
unless the folder holds a ``mapping.json`` written by an export. With ``values``, a value it does not name is
background (not stored; counted in the report). Pixels equal to ``ignore`` go to the image's
ignore mask. Each class present on an image is stored as one ``Kind.MASK`` annotation.

Export writes ``<out>/<key>.png`` (8-bit grayscale, ``<key>`` the image path without suffix) for
every done image and every image carrying a polygon or mask label, and ``<out>/mapping.json``
(``{"values": {"0": name, ...}, "background": 0, "ignore": 255}``). Uncovered pixels of a done
image get the background value; of an image not done, and the image's ignore mask, the ignore
value (255 by default, or the highest value below it that no class uses). Boxes have no pixels
of their own and are skipped. Where labels overlap, the later one (higher id) wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from labeler.core.annotation import Annotation, Category, Kind
from labeler.core.geometry import annotation_mask, decode_rle, encode_mask
from labeler.core.images import ImageError, open_checked
from labeler.core.store import Project
from labeler.formats import common
from labeler.formats.common import CategoryMap, ImageFinder, Tally, Writer
from labeler.formats.errors import FormatError

MAPPING_FILE = "mapping.json"
LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_IGNORE = 255


def parse_values(text: str | os.PathLike[str] | Mapping[int, str] | None) -> dict[int, str] | None:
    """``"0=membrane,255=cell"`` (or a mapping) as ``{0: "membrane", 255: "cell"}``; checks 0..65535.

    ``text`` may also name a text file of class names, one per line, line ``i`` (from 0) naming
    value ``i`` (labelme's ``class_names.txt``); empty lines name nothing.
    """
    if text is None:
        return None
    if isinstance(text, Mapping):
        pairs = [(str(k), str(v)) for k, v in text.items()]
    elif isinstance(text, os.PathLike) or ("=" not in text and Path(text).is_file()):
        try:
            lines = Path(text).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise FormatError(f"{text}: cannot read the class names ({exc})") from exc
        pairs = [(str(i), line.strip()) for i, line in enumerate(lines) if line.strip()]
    else:
        pairs = []
        for item in text.split(","):
            if not item.strip():
                continue
            if "=" not in item:
                raise FormatError(f"values: expected VALUE=NAME pairs separated by commas, got {item.strip()!r}")
            key, name = item.split("=", 1)
            pairs.append((key.strip(), name.strip()))
    values: dict[int, str] = {}
    for key, name in pairs:
        if not (key.isascii() and key.isdigit()) or len(key) > 5 or int(key) > 65535:
            raise FormatError(f"values: {key!r} is not a pixel value (0..65535)")
        if not name:
            raise FormatError(f"values: value {key} needs a class name")
        if int(key) in values:
            raise FormatError(f"values: value {key} is given twice")
        values[int(key)] = name
    if not values:
        raise FormatError("values: no VALUE=NAME pair given")
    return values


def read_label_png(path: Path) -> np.ndarray:
    """The ``(h, w)`` integer class values of a label image (palette indices for palette PNGs)."""
    try:
        with open_checked(path, what="label image") as im:
            if im.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
                values = np.asarray(im)
            elif im.mode in ("RGB", "RGBA", "LA"):
                pixels = np.asarray(im)
                channels = pixels[..., :3] if im.mode != "LA" else pixels[..., :1]
                if not (channels == channels[..., :1]).all():
                    raise FormatError(
                        f"{path}: a colour image, not a mask of class values (use a grayscale or palette PNG)"
                    )
                values = channels[..., 0]
            else:
                raise FormatError(f"{path}: unsupported label image mode {im.mode}")
    except ImageError as exc:
        raise FormatError(str(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FormatError(f"{path}: not a readable label image ({exc})") from exc
    return np.asarray(values, dtype=np.int64)


def _read_mapping(folder: Path) -> tuple[dict[int, str] | None, int | None]:
    path = folder / MAPPING_FILE
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        values = {int(k): str(v) for k, v in data["values"].items()}
        ignore = data.get("ignore")
        return values, int(ignore) if ignore is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"{path}: not a labeler mapping file ({exc})") from exc


# ---- import -----------------------------------------------------------------------------------


def import_masks(
    project: Project,
    source: Path,
    *,
    images_dir: Path | None = None,
    mark_done: bool = True,
    progress: common.Progress | None = None,
    values: str | Mapping[int, str] | None = None,
    ignore: int | None = None,
) -> common.ImportReport:
    """Import a folder (or one file) of label PNGs; see the module docstring. All or nothing."""
    source = Path(source)
    mapping = parse_values(values)
    folder = source if source.is_dir() else source.parent
    if mapping is None:
        mapping, saved_ignore = _read_mapping(folder)
        if ignore is None:
            ignore = saved_ignore
    if ignore is not None and mapping is not None and ignore in mapping:
        raise FormatError(f"value {ignore} is both the ignore value and class {mapping[ignore]!r}")
    files = [p for p in common.files_under(source, LABEL_SUFFIXES) if p.name != MAPPING_FILE]
    if not files:
        raise FormatError(f"{source}: no label images found")
    bases = [folder.parent / "image", folder.parent / "images"]

    def import_file(
        project: Project, path: Path, finder: ImageFinder, cats: CategoryMap, writer: Writer, tally: Tally
    ) -> None:
        image_id = finder.find_stem(common.key_of(path, folder), bases=bases)
        if image_id is None:
            tally.skip("image file not found")
        else:
            _import_one(project, path, image_id, finder, cats, writer, tally, mapping, ignore)

    # categories in the mapping's value order, present or not
    categories = [mapping[v] for v in sorted(mapping) if mapping[v] not in common.BACKGROUND_NAMES] if mapping else []
    return common.import_per_file(
        project,
        source,
        format_name="masks",
        suffix=".png",
        import_file=import_file,
        images_dir=images_dir,
        mark_done=mark_done,
        progress=progress,
        files=files,
        categories=categories,
    )


def _import_one(
    project: Project,
    path: Path,
    image_id: int,
    finder: ImageFinder,
    cats: CategoryMap,
    writer: Writer,
    tally: Tally,
    mapping: dict[int, str] | None,
    ignore: int | None,
) -> None:
    label = read_label_png(path)
    size = finder.size(image_id)
    if size is not None and (label.shape[1], label.shape[0]) != size:
        tally.skip("label image size differs from the image")
        return
    writer.image(image_id)
    for value in np.unique(label).tolist():
        if value == ignore:
            project.set_ignore_mask(image_id, encode_mask(label == value))
            tally.ignore_masks += 1
            continue
        if mapping is not None and value not in mapping:
            tally.skip(f"pixels of value {value} not in the mapping (left as background)")
            continue
        name = mapping[value] if mapping is not None else str(value)
        if name in common.BACKGROUND_NAMES:
            continue
        writer.add(
            Annotation(image_id=image_id, category_id=cats.id(name), kind=Kind.MASK, rle=encode_mask(label == value))
        )


# ---- export -----------------------------------------------------------------------------------


def default_values(categories: list[Category]) -> dict[int, str]:
    """Value per class when none is given: the names' numbers if every name is one (0..254, as an
    import without ``values`` names them), else 1..N in category order (0 is background)."""
    numbers = [c.name for c in categories]
    if (
        numbers
        and all(n.isascii() and n.isdigit() and len(n) <= 3 and int(n) < 255 for n in numbers)
        and len(set(map(int, numbers))) == len(numbers)
    ):
        return {int(c.name): c.name for c in categories}
    if len(categories) > 254:
        raise FormatError(f"{len(categories)} categories do not fit in 8-bit masks; give values")
    return {i + 1: c.name for i, c in enumerate(categories)}


def export_masks(
    project: Project,
    out: Path,
    *,
    include_proposals: bool = False,
    progress: common.Progress | None = None,
    values: str | Mapping[int, str] | None = None,
    ignore: int | None = None,
    background: int = 0,
) -> common.ExportReport:
    """Write one class-value PNG per image and ``mapping.json`` into the folder ``out``."""
    out = Path(out)
    categories = project.categories()
    mapping = parse_values(values) or default_values(categories)
    by_name = {c.name: c.id for c in categories}
    named_background = [v for v, name in mapping.items() if name in common.BACKGROUND_NAMES]
    if named_background:
        background = named_background[0]
    unknown = sorted(set(mapping.values()) - set(by_name) - common.BACKGROUND_NAMES)
    if unknown:
        raise FormatError(f"values name {unknown[0]!r}, which is not a category of the project")
    value_of = {by_name[name]: value for value, name in mapping.items() if name in by_name}
    if ignore is None:  # 255, or the highest 8-bit value no class uses
        ignore = next(v for v in range(DEFAULT_IGNORE, -1, -1) if v not in mapping and v != background)
    ignore = int(ignore)
    if ignore in mapping:
        raise FormatError(
            f"value {ignore} is both the ignore value and class {mapping[ignore]!r}; give another ignore value"
        )
    top = max([*mapping, ignore, background])
    dtype = np.uint8 if top < 256 else np.uint16
    document: dict[str, Any] = {
        "values": {str(v): name for v, name in sorted(mapping.items())},
        "background": background,
        "ignore": ignore,
    }

    def export_image(image: common.ExportImage, path: Path, tally: Tally) -> None:
        canvas = np.full((image.height, image.width), background if image.record.done else ignore, dtype=dtype)
        for ann in sorted(image.annotations, key=lambda a: a.id or 0):
            if _paint(canvas, ann, value_of, tally):
                tally.annotations += 1
        rle = project.ignore_mask(image.record.id)
        if rle is not None and [int(v) for v in rle["size"]] == [image.height, image.width]:
            canvas[decode_rle(rle)] = ignore
        Image.fromarray(canvas).save(path, format="PNG")

    return common.export_per_image(
        project,
        out,
        format_name="masks",
        suffix=".png",
        files={MAPPING_FILE: json.dumps(document, indent=2)},
        unwritten={Kind.BOX: "box (no pixels of its own)"},
        export_image=export_image,
        include_proposals=include_proposals,
        progress=progress,
    )


def _paint(canvas: np.ndarray, ann: Annotation, value_of: dict[int, int], tally: Tally) -> bool:
    if ann.category_id not in value_of:
        tally.skip("label of a class without a value")
        return False
    height, width = canvas.shape
    if ann.kind is Kind.MASK and ann.rle is not None and [int(v) for v in ann.rle["size"]] != [height, width]:
        tally.skip("mask size differs from the image")
        return False
    canvas[annotation_mask(ann, height, width)] = value_of[ann.category_id]
    return True
