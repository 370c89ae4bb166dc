"""The image under the annotations: decoded off the UI thread, drawn from a small pyramid.

Scene coordinates are full-resolution image pixels (origin at the top-left corner of the
top-left pixel). A big image (longest side over :data:`PREVIEW_ABOVE` pixels) is decoded twice in
a worker thread: first at 1/2, 1/4 or 1/8 size (JPEG decodes that fast through DCT scaling) so
something is on screen at once, then at full size. The full image of a big picture is kept as the
one ``(h, w, 3)`` uint8 RGB array the decoder made, wrapped by a ``QImage`` without a copy (an
8000 x 8000 RGB image is 192 MB: there is never a second full-size copy). Beside it the worker
builds 1/2 and 1/4 levels by area averaging (+33 % memory together), stored as 32-bit pixels, the
format Qt scales fastest; zoomed out, ``paint`` draws from the coarsest level that still has about
one source pixel per screen pixel, and only the exposed part. Small images are kept as 32-bit
pixels only. Nothing is decoded or resized in ``paint`` or anywhere on the UI thread.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtCore import QObject, QRectF, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from labeler.core.images import ImageError, read_image, read_image_size
from labeler.core.store import Project

#: Images whose longest side is over this many pixels are shown at reduced size first.
PREVIEW_ABOVE = 2048
#: The preview's longest side aims at this many pixels (it is decoded at 1/2, 1/4 or 1/8 size).
PREVIEW_SIDE = 1024


def preview_reduction(width: int, height: int) -> int:
    """The reduction (1, 2, 4 or 8) of the first, quick decode of a ``width`` x ``height`` image."""
    side = max(width, height)
    if side <= PREVIEW_ABOVE:
        return 1
    for reduce in (2, 4, 8):
        if side / reduce <= PREVIEW_SIDE:
            return reduce
    return 8


def to_qt32(rgb: np.ndarray) -> np.ndarray:
    """``(h, w, 4)`` uint8 array whose memory is ``QImage.Format_RGB32`` (0xffRRGGBB words)."""
    if sys.byteorder == "little":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    out = np.empty(rgb.shape[:2] + (4,), dtype=np.uint8)
    out[..., 0] = 255
    out[..., 1:] = rgb
    return out


def build_levels(full_rgb: np.ndarray, coarsest: int) -> dict[int, np.ndarray]:
    """The pyramid of a decoded image: ``{reduce: pixels}``.

    Small images: ``{1: 32-bit pixels}``. Big ones: ``{1: the RGB array itself, 2: ..., 4: ...}``
    down to (not including) ``coarsest`` (the preview's level, already made), each level the
    area average of the one above, as 32-bit pixels.
    """
    h, w = full_rgb.shape[:2]
    if max(w, h) <= PREVIEW_ABOVE:
        return {1: to_qt32(full_rgb)}
    levels: dict[int, np.ndarray] = {1: full_rgb}
    current, reduce = full_rgb, 1
    while reduce * 2 < coarsest:
        reduce *= 2
        current = cv2.resize(
            current, (max(1, w // reduce), max(1, h // reduce)), interpolation=cv2.INTER_AREA
        )
        levels[reduce] = to_qt32(current)
    return levels


@dataclass(frozen=True)
class DecodedLevel:
    """Pixels of one image: ``levels`` maps a reduction (1 = full size) to pixels, either
    ``(h, w, 3)`` RGB or ``(h, w, 4)`` in ``QImage.Format_RGB32`` order. ``size`` is the full
    ``(width, height)``; ``final`` is set on the last delivery (the full-size one)."""

    image_id: int
    token: int
    levels: dict[int, np.ndarray]
    size: tuple[int, int]
    final: bool

    @property
    def reduce(self) -> int:
        """The finest reduction delivered."""
        return min(self.levels)


class LoaderSignals(QObject):
    """Where loaders report; lives in the UI thread (one per canvas), so results arrive there."""

    level = Signal(object)  # DecodedLevel
    failed = Signal(int, int, str)  # image_id, token, message


class ImageLoader(QRunnable):
    """Decodes one image of a project in a pool thread, quick preview first for big images.

    Results arrive in the UI thread through ``signals.level`` (a :class:`DecodedLevel`, once or
    twice) or ``signals.failed``, tagged with ``token`` so the receiver can drop stale ones.
    ``signals`` belongs to the receiver (it outlives the loader). Setting ``cancel`` stops the
    loader between steps.
    """

    def __init__(self, project: Project, image_id: int, token: int, signals: LoaderSignals) -> None:
        super().__init__()
        self.signals = signals
        self.cancel = threading.Event()
        self._project = project
        self._image_id = image_id
        self._token = token

    def run(self) -> None:  # runs in a pool thread
        if self.cancel.is_set():  # the user moved on while this waited in the queue
            return
        try:
            path = self._project.image_path(self._image_id)
            width, height = read_image_size(path)
            reduce = preview_reduction(width, height)
            if reduce > 1:
                preview = to_qt32(read_image(path, reduce=reduce))
                if self.cancel.is_set():
                    return
                self.signals.level.emit(
                    DecodedLevel(self._image_id, self._token, {reduce: preview}, (width, height), False)
                )
            if self.cancel.is_set():
                return
            full = self._project.read_image(self._image_id)  # also records size and hash in the store
            if self.cancel.is_set():
                return
            levels = build_levels(full, reduce)
            del full
            if self.cancel.is_set():
                return
            size = (levels[1].shape[1], levels[1].shape[0])
            self.signals.level.emit(DecodedLevel(self._image_id, self._token, levels, size, True))
        except ImageError as exc:
            self.signals.failed.emit(self._image_id, self._token, str(exc))
        except Exception as exc:  # a vanished project or file: report it, never crash the pool
            self.signals.failed.emit(
                self._image_id, self._token, f"cannot show image {self._image_id}: {type(exc).__name__}: {exc}"
            )


def _wrap(pixels: np.ndarray) -> QImage:
    """A ``QImage`` over the array's memory (no copy); keep ``pixels`` alive while it is used."""
    h, w, channels = pixels.shape
    fmt = QImage.Format.Format_RGB888 if channels == 3 else QImage.Format.Format_RGB32
    return QImage(pixels.data, w, h, int(pixels.strides[0]), fmt)


class ImageLayer(QGraphicsItem):
    """Draws the current image at scene scale 1 = one image pixel, from the best level it has.

    Levels are ``{reduce: (pixels, qimage)}``; ``paint`` takes the coarsest level that still
    has at least about one source pixel per screen pixel, and only the exposed part of it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._levels: dict[int, tuple[np.ndarray, QImage]] = {}
        self._size = (0, 0)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setZValue(-1000)

    def clear(self) -> None:
        self.prepareGeometryChange()
        self._levels.clear()
        self._size = (0, 0)
        self.update()

    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the full image in pixels, ``(0, 0)`` when empty."""
        return self._size

    def finest_reduction(self) -> int | None:
        """1 when the full image is loaded, else the reduction of the preview; ``None`` if empty."""
        return min(self._levels) if self._levels else None

    def add_levels(self, levels: dict[int, np.ndarray], size: tuple[int, int]) -> None:
        """Show these levels (``{reduce: pixels}``, see :class:`DecodedLevel`) of a ``size`` image."""
        if size != self._size:
            self.prepareGeometryChange()
            self._size = size
        for reduce, pixels in levels.items():
            pixels = np.ascontiguousarray(pixels)
            self._levels[reduce] = (pixels, _wrap(pixels))
        self.update()

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
        reduce = min(self._levels)
        for r in sorted(self._levels, reverse=True):
            if lod * r <= 1.25:
                reduce = r
                break
        _, image = self._levels[reduce]
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        # Exposed part in the level's pixels, grown to whole pixels so edges line up.
        sx0 = max(0, int(exposed.left() / reduce))
        sy0 = max(0, int(exposed.top() / reduce))
        sx1 = min(image.width(), int(np.ceil(exposed.right() / reduce)) + 1)
        sy1 = min(image.height(), int(np.ceil(exposed.bottom() / reduce)) + 1)
        if sx1 <= sx0 or sy1 <= sy0:
            return
        w, h = self._size
        kx, ky = w / image.width(), h / image.height()
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
