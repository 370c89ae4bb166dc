"""Safe image reading.

- Files are recognised by content, not extension (``.jpg`` files that are PNG read fine).
- EXIF orientation is honoured (an invalid value such as 0 counts as "upright").
- Grayscale, palette, 16-bit and alpha images come back as ``(h, w, 3)`` uint8 RGB; transparent
  pixels are composited on :data:`BACKGROUND_RGB` (what hides under them in the file is junk), the
  same for the canvas, the thumbnails and the models' inputs, since all of them read through here.
- Decompression bombs are refused before decoding: the header is read first (Pillow reads headers
  lazily) and images over ``max_pixels`` raise :class:`ImageError`.
- Unicode paths work (bytes are read by Python, decoded by OpenCV from memory).
- Big JPEGs can be decoded at 1/2, 1/4 or 1/8 size directly (``reduce``), which is how the GUI
  shows an 8000 x 8000 photo at screen resolution first.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from labeler.core.files import NotAFileError, check_regular_file

if TYPE_CHECKING:
    import pyvips

DEFAULT_MAX_PIXELS = 20_000 * 20_000
"""Images with more pixels than this are refused unless ``max_pixels`` or ``$LABELER_MAX_PIXELS`` say otherwise."""
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jp2", ".pgm", ".ppm", ".pbm"}
)
BACKGROUND_RGB = (255, 255, 255)
"""The neutral background that transparent pixels are composited on."""
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_ROTATED_ORIENTATIONS = frozenset({5, 6, 7, 8})
# EXIF orientation -> how to turn the stored pixels upright (as Pillow's exif_transpose does).
_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


class ImageError(Exception):
    """An image that cannot be read: missing, corrupt, unknown format, or too large."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if the name looks like an image (used to list folders without opening files)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@contextmanager
def open_checked(
    source: str | os.PathLike[str] | IO[bytes], *, max_pixels: int | None = None, what: str = "image"
) -> Iterator[Image.Image]:
    """Open ``source`` with Pillow (header only) and refuse it before any pixel is decoded when its
    size is over the pixel limit (``max_pixels``, else :func:`max_pixels_limit`).

    Every decode of pixels in labeler (images, label-mask PNGs, labelme's base64 masks) goes through
    this per-decode check. Pillow's own process-wide bomb guard is left in force; its warning is
    silenced here only because this check is the stricter one below Pillow's hard limit.
    """
    limit = max_pixels_limit() if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{_name(source)}: the {what} is too large to decode ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{_name(source)}: not a readable {what} ({exc})") from exc
    with im:
        width, height = im.size
        if width * height > limit:
            raise ImageError(
                f"{_name(source)}: {width} x {height} pixels is over the limit of {limit:,} "
                "(set LABELER_MAX_PIXELS to allow larger images)"
            )
        yield im


def _name(source: object) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<data>"


def _header(path: str | os.PathLike[str]) -> tuple[int, int, int, str, bool]:
    """``(width, height, orientation, format, alpha)`` as stored in the file, from the header alone.

    ``orientation`` is the EXIF orientation tag (1..8); a missing, broken or invalid tag is 1.
    ``format`` is Pillow's name for it (``"JPEG"``, ``"PNG"``, ...); ``alpha`` says whether some
    pixels may be transparent (an alpha channel or a transparent colour).
    """
    try:
        check_regular_file(path)  # a named pipe or a device is never opened
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as im:
            width, height = im.size
            image_format = str(im.format or "")
            alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
            orientation = 1
            # A PNG's eXIf chunk is read only where it comes before the pixel data (Pillow has it
            # in ``info`` then); looking for one after the pixels would decode the whole image.
            if im.format in ("JPEG", "TIFF", "WEBP", "MPO") or (im.format == "PNG" and "exif" in im.info):
                try:
                    orientation = int(im.getexif().get(0x0112, 1) or 1)
                except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to refuse the image
                    orientation = 1
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{path}: is a folder, not an image") from exc
    except NotAFileError as exc:
        raise ImageError(str(exc)) from None
    except Image.DecompressionBombError as exc:
        big = _vips_header(path)  # a gigapixel image, shown by tiles (labeler.core.tiles)
        if big is None:
            raise ImageError(f"{path}: too large to decode ({exc})") from exc
        width, height, orientation, image_format, alpha = big
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc
    if orientation not in _ORIENT:
        orientation = 1
    return int(width), int(height), orientation, image_format, bool(alpha)


def _vips_header(path: str | os.PathLike[str]) -> tuple[int, int, int, str, bool] | None:
    """:func:`_header`'s answer from libvips, for images Pillow's own bomb guard refuses to open
    (over ~179 MP); ``None`` without pyvips or when libvips cannot read the header either."""
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    try:
        image = pyvips.Image.new_from_file(os.fspath(path), access="sequential", revalidate=True)
        fields = set(image.get_fields())
        loader = str(image.get("vips-loader")) if "vips-loader" in fields else ""
        orientation = int(image.get("orientation")) if "orientation" in fields else 1
        return int(image.width), int(image.height), orientation, _VIPS_FORMATS.get(loader, loader), image.hasalpha()
    except pyvips.Error:
        return None


_VIPS_FORMATS = {"jpegload": "JPEG", "pngload": "PNG", "tiffload": "TIFF", "webpload": "WEBP", "gifload": "GIF"}


def read_header(path: str | os.PathLike[str]) -> tuple[int, int, int, str, bool]:
    """``(width, height, orientation, format, alpha)`` as stored in the file, from the header alone
    (sizes before the EXIF ``orientation``, 1..8, is applied; ``format`` is Pillow's name, such as
    ``"JPEG"`` or ``"TIFF"``). :class:`ImageError` when the file is no readable image."""
    return _header(path)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` after EXIF orientation, from the header alone (no pixel decoding)."""
    width, height, orientation, _, _ = _header(path)
    if orientation in _ROTATED_ORIENTATIONS:
        width, height = height, width
    return width, height


def max_pixels_limit() -> int:
    """The pixel limit in force: ``$LABELER_MAX_PIXELS`` if set (read at each call), else 400 MP."""
    text = os.environ.get("LABELER_MAX_PIXELS")
    if text:
        try:
            return int(text)
        except ValueError:
            raise ImageError(f"LABELER_MAX_PIXELS must be a whole number, not {text!r}") from None
    return DEFAULT_MAX_PIXELS


def mask_refusal(width: int, height: int) -> str | None:
    """Why no mask can be made on a ``width`` x ``height`` image (one line), or ``None`` if one can:
    a mask is the image's size, so over the pixel limit it would take gigabytes (and the store
    refuses it); boxes and polygons have no such limit."""
    limit = max_pixels_limit()
    if width * height <= limit:
        return None
    return (
        f"No masks on this {width:,} x {height:,} image: it is over the limit of {limit:,} pixels for a mask "
        "(LABELER_MAX_PIXELS); draw boxes or polygons"
    )


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF ``orientation`` (1..8) to ``(h, w, c)`` pixels stored as in the file."""
    turned: np.ndarray = _ORIENT[orientation](image)
    return turned


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None, reduce: int = 1) -> np.ndarray:
    """Decode an image file to ``(h, w, 3)`` uint8 RGB.

    ``reduce`` (1, 2, 4 or 8) decodes at that fraction of the size per side (fast for JPEG).
    Raises :class:`ImageError` with the reason on any failure.
    """
    if reduce not in (1, 2, 4, 8):
        raise ValueError("reduce must be 1, 2, 4 or 8")
    width, height, orientation, image_format, alpha = _checked_header(path, max_pixels)
    if reduce > 1 and image_format == "PNG" and not alpha:
        reduced = _png_reduced(path, reduce, width=width, height=height)
        if reduced is not None:
            return np.ascontiguousarray(_orient(reduced, orientation))
    return _decode(path, orientation, reduce, alpha=alpha)


def stream_image(
    path: str | os.PathLike[str],
    reduce: int,
    on_rows: Callable[[np.ndarray, int], bool],
    *,
    max_pixels: int | None = None,
) -> np.ndarray | None:
    """The image at ``1/reduce`` size per side (2, 4 or 8) as ``(h, w, 3)`` RGB, decoded while
    streaming, with the rows handed over as they come, so a viewer can show the top of the image
    long before the last rows are inflated: the pixels are written from the top into one array,
    and ``on_rows(pixels, rows)`` is called each time at least :data:`BAND_ROWS` more rows (the
    first time :data:`FIRST_BAND_ROWS`) hold their pixels, and once at the end. ``on_rows``
    returning ``False`` stops the decode (``None`` is returned then).

    Only where a file can be streamed so: an 8-bit RGB PNG without transparency or orientation,
    with pyvips (the optional ``big`` extra) installed; ``None`` otherwise, without a call:
    :func:`read_image` decodes it then. A damaged file raises :class:`ImageError` (after the
    rows before the damage were handed over). Same pixels as :func:`read_image`."""
    if reduce not in (2, 4, 8):
        raise ValueError("reduce must be 2, 4 or 8")
    width, height, orientation, image_format, alpha = _checked_header(path, max_pixels)
    if image_format != "PNG" or alpha or orientation != 1:
        return None
    shrunk = _png_shrunk(path, reduce, width=width, height=height)
    if shrunk is None:
        return None
    import pyvips

    out_w, out_h = width // reduce, height // reduce
    pixels = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    flat = pixels.reshape(-1)
    row_bytes = out_w * 3
    written = [0, 0]  # bytes so far, rows last handed over
    stopped = [False]

    def write(chunk: bytes) -> int:  # libvips' writer calls this with the rows in order
        start = written[0]
        room = min(len(chunk), flat.size - start)  # libvips' rows past the rounded-down size are dropped
        if room > 0:
            flat[start : start + room] = np.frombuffer(chunk, dtype=np.uint8, count=room)
            written[0] = start + room
        rows = written[0] // row_bytes
        if rows - written[1] >= (FIRST_BAND_ROWS if written[1] == 0 else BAND_ROWS) or (
            rows == out_h and written[1] < out_h
        ):
            written[1] = rows
            if not on_rows(pixels, rows):
                stopped[0] = True
                return -1  # libvips ends the decode with an error
        return len(chunk)

    target = pyvips.TargetCustom()
    target.on_write(write)
    try:
        shrunk.crop(0, 0, out_w, out_h).rawsave_target(target)
    except pyvips.Error as exc:
        if stopped[0]:
            return None
        raise ImageError(f"{path}: not a readable image ({' '.join(str(exc).split())})") from None
    if stopped[0]:
        return None
    if written[1] < out_h:
        raise ImageError(f"{path}: not a readable image (the pixels end at row {written[1] * reduce} of {height})")
    return pixels


#: Rows of the first band :func:`stream_image` hands over (small: the first pixels come soon),
#: and at least that many more each time after it (each hand-over costs the viewer a repaint).
FIRST_BAND_ROWS = 64
BAND_ROWS = 256


def _png_shrunk(path: str | os.PathLike[str], reduce: int, *, width: int, height: int) -> pyvips.Image | None:
    """A PNG opened by libvips for reading once from the top, shrunk by ``reduce``: rows are
    shrunk as they are inflated, so an 8000 x 8000 PNG shown at 1/4 costs ~90 MB, not the ~300 MB
    of a whole decode (OpenCV's reduced modes shrink only PNG's finished full image). ``None``
    where pyvips (the optional ``big`` extra) is not installed or the PNG is not 8-bit RGB."""
    try:
        import pyvips
    except (ImportError, OSError):  # not installed, or its libvips missing
        return None
    try:
        image = pyvips.Image.new_from_file(os.fspath(path), access="sequential", fail=True)
        if image.bands != 3 or image.format != "uchar" or (image.width, image.height) != (width, height):
            return None  # grey, 16-bit or odd PNGs: the whole decode handles them as before
        shrunk = image.shrink(reduce, reduce)
    except pyvips.Error:
        return None
    if shrunk.width < width // reduce or shrunk.height < height // reduce:
        return None
    return shrunk


def _png_reduced(path: str | os.PathLike[str], reduce: int, *, width: int, height: int) -> np.ndarray | None:
    """A PNG at ``1/reduce`` size per side (RGB, as stored) through :func:`_png_shrunk`; ``None``
    where it cannot be read so (the caller decodes it whole then). Same size as OpenCV's reduced
    decode (sides rounded down)."""
    shrunk = _png_shrunk(path, reduce, width=width, height=height)
    if shrunk is None:
        return None
    import pyvips

    try:
        pixels = shrunk.numpy()
    except pyvips.Error:
        return None
    reduced: np.ndarray = pixels[: height // reduce, : width // reduce]
    return reduced


def read_image_at_least(
    path: str | os.PathLike[str], min_side: int, *, max_pixels: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(pixels, (height, width))``: the image decoded as small as still gives at least
    ``min_side`` pixels on each side, and its full upright size.

    For a consumer that shrinks every image anyway (a network with a fixed input size): a JPEG is
    decoded at 1/2, 1/4 or 1/8 size when that keeps both sides at least ``min_side`` (scaling in
    the JPEG decoder costs a fraction of a full decode); other formats are decoded whole.
    """
    width, height, orientation, image_format, alpha = _checked_header(path, max_pixels)
    reduce = 1
    if image_format in ("JPEG", "MPO"):
        for r in (8, 4, 2):
            if min(width, height) // r >= min_side:
                reduce = r
                break
    pixels = _decode(path, orientation, reduce, alpha=alpha)
    upright = (width, height) if orientation not in _ROTATED_ORIENTATIONS else (height, width)
    return pixels, (upright[1], upright[0])


def _checked_header(path: str | os.PathLike[str], max_pixels: int | None) -> tuple[int, int, int, str, bool]:
    """:func:`_header`, refusing images over the pixel limit before anything is decoded."""
    limit = max_pixels_limit() if max_pixels is None else max_pixels
    width, height, orientation, image_format, alpha = _header(path)
    if width * height > limit:
        raise ImageError(
            f"{path}: {width} x {height} pixels is over the limit of {limit:,} "
            "(set LABELER_MAX_PIXELS to allow larger images)"
        )
    return width, height, orientation, image_format, alpha


def _decode(path: str | os.PathLike[str], orientation: int, reduce: int, *, alpha: bool = False) -> np.ndarray:
    """The file's pixels as ``(h, w, 3)`` uint8 RGB, upright, at ``1/reduce`` size
    (with ``alpha``, composited on :data:`BACKGROUND_RGB`)."""
    if alpha:
        return np.ascontiguousarray(_read_with_pillow(path, reduce, alpha=True))
    try:
        data = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc})") from exc
    # OpenCV decodes the stored pixels; orientation is applied here from the same header that
    # read_image_size uses, so sizes and pixels always agree whatever the format.
    flags = (cv2.IMREAD_COLOR if reduce == 1 else _REDUCED_FLAGS[reduce]) | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        return np.ascontiguousarray(_read_with_pillow(path, reduce))
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: no second full-size copy
    return np.ascontiguousarray(_orient(image, orientation))


def _read_with_pillow(path: str | os.PathLike[str], reduce: int, *, alpha: bool = False) -> np.ndarray:
    """Fallback for what OpenCV cannot decode (GIF, some palette PNGs), and images with transparency."""
    try:
        from PIL import ImageOps

        with open_checked(path) as opened:
            upright: Image.Image = ImageOps.exif_transpose(opened)
            if reduce > 1:
                upright = upright.reduce(reduce)
            if not alpha:
                return np.asarray(upright.convert("RGB"))
            rgba = np.asarray(upright.convert("RGBA"), dtype=np.float32)
            a = rgba[..., 3:] / 255.0
            out = rgba[..., :3] * a + np.asarray(BACKGROUND_RGB, np.float32) * (1.0 - a)
            flat: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
            return flat
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: corrupt or unsupported image ({exc})") from exc


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
