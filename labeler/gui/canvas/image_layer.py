"""The image under the annotations: decoded off the UI thread, at the resolution the view needs.

Scene coordinates are full-resolution image pixels (origin at the top-left corner of the
top-left pixel), whatever level is shown. A big image (longest side over :data:`PREVIEW_ABOVE`
pixels) is first decoded in a worker thread at 1/2, 1/4 or 1/8 size, chosen so that it has about
one pixel per screen pixel when the whole image fits the view (JPEG decodes that fast, through DCT
scaling). A finer level is decoded only when the view zooms in past what the levels held can
show (:meth:`ImageLayer.needed_reduction`); the full resolution only when zoomed in near 1:1.
The layer keeps at most two levels: the first, small one (shown while a finer one decodes, and
when zoomed out again) and the finest one asked for; zooming back out to the small level drops
the finer one (:meth:`ImageLayer.drop_finer_than`).

Memory: the full resolution of a big JPEG is decoded by Pillow straight into one 32-bit array
(:func:`decode_jpeg_rgbx`; the format Qt draws fastest), wrapped by a ``QImage`` without a copy:
an 8000 x 8000 image costs one 256 MB buffer and never two (OpenCV's decoder would hold two
3-byte copies for a moment, 384 MB). Other levels of at most :data:`QT32_MAX_PIXELS` pixels are
converted to 32-bit pixels; bigger ones (other formats) stay the ``(h, w, 3)`` RGB array the
decoder made, wrapped as ``RGB888`` without a copy. Masks and every tool
work in full-resolution coordinates, independent of the level shown. Nothing is decoded or
resized in ``paint`` or anywhere on the UI thread.

A PNG is inflated row after row whatever the level (one zlib stream, one core: ~0.8 s for an
8000 x 8000 photo), so its first level is shown while it streams (:func:`stream_image`):
the first band of rows after some 50 ms, then each band as it comes, the rest of the image
still empty. Until the last band, the level is *partial* (:attr:`DecodedLevel.ready_rows`) and
the tools do not read it (:meth:`ImageLayer.finest_level`).

An image too big to decode whole (:func:`labeler.core.tiles.pyramid_info`: over 100 MP, or a big
tiled TIFF) is never decoded whole: the loader opens (the first time, builds) its tile pyramid,
and this layer holds only the pyramid level that fits :data:`OVERVIEW_SIDE`, under the
:class:`~.tiled_layer.TiledImageLayer` that paints the tiles of finer levels.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, QRectF, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from labeler.core.images import ImageError, max_pixels_limit, read_image, read_image_size, stream_image
from labeler.core.store import Project
from labeler.core.tiles import TilePyramid, open_pyramid, pyramid_cache_dir, pyramid_info

#: Images whose longest side is over this many pixels are shown at reduced size first.
PREVIEW_ABOVE = 2048
#: Without a view size, the first level's longest side aims at this many pixels.
PREVIEW_SIDE = 1024
#: The reductions a JPEG can be decoded at directly, coarsest first.
REDUCTIONS = (8, 4, 2, 1)
#: A level is good enough while one of its pixels covers at most this many screen pixels.
MAX_MAGNIFICATION = 1.25
#: Levels up to this many pixels are converted to 32-bit pixels (16 MB); bigger ones stay RGB888.
QT32_MAX_PIXELS = 4096 * 1024
#: An image shown by tiles (:mod:`labeler.core.tiles`) is held whole only at the finest pyramid
#: level whose longest side is at most this: the overview under the tiles, 32-bit pixels of at
#: most 16 MB (6 MB for 40,000 x 40,000: level 5, 1250 x 1250); finer views are drawn by tiles.
OVERVIEW_SIDE = 2048


def preview_reduction(width: int, height: int, screen_side: int | None = None) -> int:
    """The reduction (1, 2, 4 or 8) of the first decode of a ``width`` x ``height`` image.

    ``screen_side`` is the longest side of the view in device pixels: the coarsest reduction whose
    pixels, with the image fitted to the view, are magnified at most :data:`MAX_MAGNIFICATION`
    times. Without it the first level's longest side aims at :data:`PREVIEW_SIDE`. Images of at
    most :data:`PREVIEW_ABOVE` pixels per side are decoded at full size at once.
    """
    side = max(width, height)
    if side <= PREVIEW_ABOVE:
        return 1
    if screen_side is None:
        for reduce in (2, 4, 8):
            if side / reduce <= PREVIEW_SIDE:
                return reduce
        return 8
    for reduce in REDUCTIONS:
        if side / reduce * MAX_MAGNIFICATION >= screen_side:
            return reduce
    return 1


def to_qt32(rgb: np.ndarray) -> np.ndarray:
    """``(h, w, 4)`` uint8 array whose memory is ``QImage.Format_RGB32`` (0xffRRGGBB words)."""
    if sys.byteorder == "little":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    out = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
    out[..., 0] = 255
    out[..., 1:] = rgb
    return out


def display_pixels(rgb: np.ndarray) -> np.ndarray:
    """The pixels a level is kept as: 32-bit for small levels, the RGB array itself for big ones
    (no second copy of a big image, ever)."""
    if rgb.shape[0] * rgb.shape[1] <= QT32_MAX_PIXELS:
        return to_qt32(rgb)
    return np.ascontiguousarray(rgb)


def decode_jpeg_rgbx(path: str | os.PathLike[str]) -> np.ndarray | None:
    """Decode a JPEG at full size straight into one ``(h, w, 4)`` uint8 array in
    ``QImage.Format_RGB32`` order (as :func:`to_qt32` makes: B, G, R, 255 on little-endian
    machines), or ``None`` where this does not apply (not a plain RGB JPEG, an EXIF orientation
    other than 1, over the pixel limit, or a Pillow without the decoder interface used).

    Pillow's JPEG decoder writes into an image that maps the array's memory, so the peak memory
    is this one array (OpenCV's ``imdecode`` holds two full-size copies for a moment: 384 MB for
    an 8000 x 8000 image where this takes 256 MB); the channel swap is done in place. Same
    pixels as :func:`read_image`.
    """
    try:
        with Image.open(path) as src:
            if src.format != "JPEG" or src.mode != "RGB" or len(src.tile) != 1:
                return None
            if src.getexif().get(0x0112, 1) not in (None, 1):
                return None
            width, height = src.size
            if width * height > max_pixels_limit():
                return None
            (codec, extents, offset, args) = src.tile[0]
            if codec != "jpeg" or extents is None or tuple(extents) != (0, 0, width, height):
                return None
            mode_args = args if isinstance(args, tuple) else ()
            pixels = np.empty((height, width, 4), dtype=np.uint8)
            target = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
            decoder = Image._getdecoder(
                "RGBX", "jpeg", ("RGBX", mode_args[1] if len(mode_args) > 1 else ""), src.decoderconfig
            )
            decoder.setimage(target.im, extents)
            with open(path, "rb") as f:
                f.seek(offset)
                data = b""
                while True:
                    chunk = f.read(1 << 20)
                    data += chunk
                    consumed, error = decoder.decode(data)
                    if consumed < 0:  # finished (error 0) or failed
                        break
                    data = data[consumed:]
                    if not chunk and consumed == 0:
                        error = -2  # the file ended before the image did
                        break
            decoder.cleanup()
            if error < 0:
                return None  # let the general reader report what is wrong
            if sys.byteorder == "little":  # to QImage.Format_RGB32's bytes (B, G, R, 255), in place,
                for y in range(0, height, 256):  # by bands (OpenCV swaps through a temporary copy)
                    band = pixels[y : y + 256]
                    cv2.cvtColor(band, cv2.COLOR_RGBA2BGRA, dst=band)
            return pixels
    except (AttributeError, TypeError, ValueError, OSError, Image.DecompressionBombError):
        return None


@dataclass(frozen=True)
class DecodedLevel:
    """One decoded level of an image: ``pixels`` at 1/``reduce`` size per side, either
    ``(h, w, 3)`` RGB or ``(h, w, 4)`` in ``QImage.Format_RGB32`` order (see
    :func:`display_pixels` and :func:`decode_jpeg_rgbx`). ``size`` is the full ``(width, height)``.
    For an image shown by tiles, ``pyramid`` is its pyramid and this level its overview
    (``reduce = 2**k`` for pyramid level ``k``). ``ready_rows`` is ``None`` for a level decoded
    whole; for one still streaming, how many rows from the top hold pixels so far (the loader
    fills the rest of ``pixels`` in place and reports each band by ``LoaderSignals.rows``)."""

    image_id: int
    token: int
    reduce: int
    pixels: np.ndarray
    size: tuple[int, int]
    pyramid: TilePyramid | None = None
    ready_rows: int | None = None

    @property
    def final(self) -> bool:
        """Whether this is the full resolution."""
        return self.reduce == 1


class LoaderSignals(QObject):
    """Where loaders report; lives in the UI thread (one per canvas), so results arrive there."""

    level = Signal(object)  # DecodedLevel
    failed = Signal(int, int, str)  # image_id, token, message
    progress = Signal(int, int, str)  # image_id, token, what is being done (a pyramid being built)
    rows = Signal(int, int, int, int)  # image_id, token, reduce, rows ready of a streaming level


class ImageLoader(QRunnable):
    """Decodes one level of one image of a project in a pool thread.

    ``reduce`` is the level to decode (1, 2, 4 or 8); ``None`` picks the first level from the
    image size and ``screen_side`` (see :func:`preview_reduction`). The result arrives in the UI
    thread through ``signals.level`` (a :class:`DecodedLevel`) or ``signals.failed``, tagged with
    ``token`` so the receiver can drop stale ones. ``signals`` belongs to the receiver (it outlives
    the loader). Setting ``cancel`` drops the result (a decode in progress is not interrupted).
    """

    def __init__(
        self,
        project: Project,
        image_id: int,
        token: int,
        signals: LoaderSignals,
        *,
        reduce: int | None = None,
        screen_side: int | None = None,
    ) -> None:
        super().__init__()
        if reduce is not None and reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, not {reduce}")
        self.signals = signals
        self.cancel = threading.Event()
        self._project = project
        self._image_id = image_id
        self._token = token
        self._reduce = reduce
        self._screen_side = screen_side

    def run(self) -> None:  # runs in a pool thread
        if self.cancel.is_set():  # the user moved on while this waited in the queue
            return
        try:
            path = self._project.image_path(self._image_id)
            if self._reduce is None and pyramid_info(path) is not None:
                self._emit_pyramid(path)  # too big to decode whole: shown by tiles
                return
            width, height = read_image_size(path)
            reduce = self._reduce
            if reduce is None:
                reduce = preview_reduction(width, height, self._screen_side)
            if reduce > 1 and self._emit_stream(path, reduce, (width, height)):
                return
            qt32 = decode_jpeg_rgbx(path) if reduce == 1 and max(width, height) > PREVIEW_ABOVE else None
            if qt32 is not None:
                pixels = qt32
            else:
                if reduce == 1:
                    rgb = self._project.read_image(self._image_id)  # also records size and hash in the store
                    width, height = rgb.shape[1], rgb.shape[0]
                else:
                    rgb = read_image(path, reduce=reduce)
                if self.cancel.is_set():
                    return
                pixels = display_pixels(rgb)
                del rgb
            if self.cancel.is_set():
                return
            self.signals.level.emit(DecodedLevel(self._image_id, self._token, reduce, pixels, (width, height)))
        except ImageError as exc:
            self.signals.failed.emit(self._image_id, self._token, str(exc))
        except Exception as exc:  # noqa: BLE001 - a vanished project or file: report it, never crash the pool
            self.signals.failed.emit(
                self._image_id, self._token, f"cannot show image {self._image_id}: {type(exc).__name__}: {exc}"
            )

    def _emit_stream(self, path: os.PathLike[str], reduce: int, size: tuple[int, int]) -> bool:
        """Decode the level while it streams (:func:`stream_image`): send it at its first band,
        then each further band's rows, copied into the very array the layer shows (as
        :func:`display_pixels` keeps a level). ``False`` (nothing sent) where the file does not
        stream so."""
        w, h = size[0] // reduce, size[1] // reduce
        qt32 = w * h <= QT32_MAX_PIXELS
        shown: list[np.ndarray] = []  # the level's display pixels, once sent
        done = [0]

        def on_rows(rgb: np.ndarray, rows: int) -> bool:
            if self.cancel.is_set():
                return False  # another image: stop inflating this one
            if not shown:
                shown.append(np.zeros((h, w, 4), dtype=np.uint8) if qt32 else rgb)
            if qt32:
                shown[0][done[0] : rows] = to_qt32(rgb[done[0] : rows])
            if done[0] == 0:  # (a short image may come whole in its first band)
                ready = rows if rows < h else None
                self.signals.level.emit(
                    DecodedLevel(self._image_id, self._token, reduce, shown[0], size, ready_rows=ready)
                )
            else:
                self.signals.rows.emit(self._image_id, self._token, reduce, rows)
            done[0] = rows
            return True

        return stream_image(path, reduce, on_rows) is not None or bool(shown) or self.cancel.is_set()

    def _emit_pyramid(self, path: os.PathLike[str]) -> None:
        """Open (or first build) the image's pyramid and send its overview level with it."""
        width, height = read_image_size(path)
        said = [-1]

        def building(percent: int) -> None:  # libvips calls this many times a second
            if percent != said[0]:
                said[0] = percent
                self.signals.progress.emit(
                    self._image_id,
                    self._token,
                    f"Preparing the tiles of this {width:,} x {height:,} image (the first time only): {percent} %",
                )

        pyramid = open_pyramid(path, pyramid_cache_dir(self._project.root), progress=building, cancel=self.cancel)
        if self.cancel.is_set():
            return
        level = pyramid.level_for(OVERVIEW_SIDE)
        pixels = display_pixels(pyramid.read_level(level))
        if self.cancel.is_set():
            return
        self.signals.level.emit(
            DecodedLevel(self._image_id, self._token, 2**level, pixels, pyramid.size, pyramid=pyramid)
        )


def _wrap(pixels: np.ndarray) -> QImage:
    """A ``QImage`` over the array's memory (no copy); keep ``pixels`` alive while it is used."""
    h, w, channels = pixels.shape
    fmt = QImage.Format.Format_RGB888 if channels == 3 else QImage.Format.Format_RGB32
    return QImage(pixels.data, w, h, int(pixels.strides[0]), fmt)


class ImageLayer(QGraphicsItem):
    """Draws the current image at scene scale 1 = one image pixel, from the best level it has.

    Levels are ``{reduce: (pixels, qimage)}``, at most two: the first (coarsest) one and the
    finest one the view asked for. ``paint`` takes the coarsest level that still has about one
    source pixel per screen pixel (else the finest held), draws only the exposed part of it, and
    calls ``on_need(reduce)`` when the view would need a finer level than any held (the canvas
    then decodes it in a worker; ``paint`` itself never decodes).
    """

    def __init__(self) -> None:
        super().__init__()
        self._levels: dict[int, tuple[np.ndarray, QImage]] = {}
        self._ready: dict[int, int] = {}  # rows holding pixels so far, for a level still streaming
        self._size = (0, 0)
        self.on_need: Callable[[int], None] | None = None
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setZValue(-1000)

    def clear(self) -> None:
        self.prepareGeometryChange()
        self._levels.clear()
        self._ready.clear()
        self._size = (0, 0)
        self.update()

    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the full image in pixels, ``(0, 0)`` when empty."""
        return self._size

    def finest_reduction(self) -> int | None:
        """1 when the full image is loaded, else the finest reduction held; ``None`` if empty."""
        return min(self._levels) if self._levels else None

    def finest_level(self) -> tuple[int, np.ndarray] | None:
        """``(reduce, pixels)`` of the finest whole level held (see :class:`DecodedLevel`), or
        ``None`` (also while the only level is still streaming: its lower rows are empty)."""
        whole = [r for r in self._levels if r not in self._ready]
        if not whole:
            return None
        reduce = min(whole)
        return reduce, self._levels[reduce][0]

    def is_partial(self) -> bool:
        """Whether a level held is still streaming in (see :meth:`set_ready_rows`)."""
        return bool(self._ready)

    def set_ready_rows(self, reduce: int, rows: int) -> bool:
        """A streaming level now holds pixels in its first ``rows`` rows (all of them: it is
        whole). ``False`` when that level is no longer held (another image, or dropped)."""
        if reduce not in self._ready:
            return False
        if rows >= self._levels[reduce][0].shape[0]:
            del self._ready[reduce]
        else:
            self._ready[reduce] = rows
        self.update()
        return True

    def coarsest_reduction(self) -> int | None:
        """The reduction of the first level (the one kept while finer ones come and go)."""
        return max(self._levels) if self._levels else None

    def reductions(self) -> list[int]:
        """The reductions held, finest first."""
        return sorted(self._levels)

    def needed_reduction(self, zoom: float) -> int:
        """The coarsest reduction whose pixels at ``zoom`` (screen pixels per image pixel) are
        magnified at most :data:`MAX_MAGNIFICATION` times; 1 when zoomed in further (or for an
        image whose first level is already the full size)."""
        if self._levels and max(self._levels) == 1:
            return 1
        for reduce in REDUCTIONS:
            if zoom * reduce <= MAX_MAGNIFICATION:
                return reduce
        return 1

    def add_level(
        self, reduce: int, pixels: np.ndarray, size: tuple[int, int], *, ready_rows: int | None = None
    ) -> None:
        """Show ``pixels``, the level at 1/``reduce`` size of a ``size`` image (see
        :class:`DecodedLevel`; with ``ready_rows``, only that many rows hold pixels yet, and the
        caller fills the rest in place). Keeps the coarsest level held and this one; drops the
        others."""
        if size != self._size:
            self.prepareGeometryChange()
            self._size = size
            self._levels.clear()
            self._ready.clear()
        coarsest = max(self._levels) if self._levels else reduce
        for r in list(self._levels):
            if r not in (coarsest, reduce):
                del self._levels[r]
                self._ready.pop(r, None)
        if ready_rows is None or ready_rows >= len(pixels):
            pixels = np.ascontiguousarray(pixels)
            self._ready.pop(reduce, None)
        else:  # the very array the loader fills: never a copy
            assert pixels.flags.c_contiguous
            self._ready[reduce] = ready_rows
        self._levels[reduce] = (pixels, _wrap(pixels))
        self.update()

    def add_levels(self, levels: dict[int, np.ndarray], size: tuple[int, int]) -> None:
        """:meth:`add_level` for each of ``{reduce: pixels}``, coarsest first."""
        for reduce in sorted(levels, reverse=True):
            self.add_level(reduce, levels[reduce], size)

    def drop_finer_than(self, reduce: int) -> bool:
        """Free the levels finer than ``reduce`` when a level at least that coarse is held (the
        view no longer needs them); ``True`` if any was dropped."""
        if not any(r >= reduce for r in self._levels):
            return False
        finer = [r for r in self._levels if r < reduce]
        for r in finer:
            del self._levels[r]
            self._ready.pop(r, None)
        if finer:
            self.update()
        return bool(finer)

    def level_bytes(self) -> int:
        """Memory held by the pixels of all levels, in bytes."""
        return sum(p.nbytes for p, _ in self._levels.values())

    # ---- QGraphicsItem -----------------------------------------------------------------

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._size[0], self._size[1])

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if not self._levels:
            return
        lod = option.levelOfDetailFromTransform(painter.worldTransform())  # screen px per image px
        held = sorted(self._levels, reverse=True)
        whole = [r for r in held if r not in self._ready] or held  # a streaming level only when alone
        reduce = min(whole)
        for r in whole:
            if lod * r <= MAX_MAGNIFICATION:
                reduce = r
                break
        needed = self.needed_reduction(lod)
        if needed < min(self._levels) and self.on_need is not None:
            self.on_need(needed)
        _, image = self._levels[reduce]
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        # Exposed part in the level's pixels, grown to whole pixels so edges line up.
        w, h = self._size
        kx, ky = w / image.width(), h / image.height()
        sx0 = max(0, int(exposed.left() / kx))
        sy0 = max(0, int(exposed.top() / ky))
        sx1 = min(image.width(), int(np.ceil(exposed.right() / kx)) + 1)
        sy1 = min(image.height(), self._ready.get(reduce, image.height()), int(np.ceil(exposed.bottom() / ky)) + 1)
        if sx1 <= sx0 or sy1 <= sy0:
            return
        target = QRectF(sx0 * kx, sy0 * ky, (sx1 - sx0) * kx, (sy1 - sy0) * ky)
        source = QRectF(sx0, sy0, sx1 - sx0, sy1 - sy0)
        # Smooth when shrinking or mildly enlarging; show crisp pixels when zoomed in to label.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, lod * reduce < 2.0)
        painter.drawImage(target, image, source)


def start_loader(pool: QThreadPool, loader: ImageLoader) -> None:
    """Run ``loader`` in ``pool``; the pool owns it and deletes it when done."""
    loader.setAutoDelete(True)
    pool.start(loader)


__all__ = ["DecodedLevel", "ImageLayer", "ImageLoader", "LoaderSignals", "preview_reduction", "start_loader"]
