"""The image under the annotations: decoded off the UI thread, drawn from a small pyramid.

Scene coordinates are full-resolution image pixels (origin at the top-left corner of the
top-left pixel). A big image (longest side over :data:`PREVIEW_ABOVE` pixels) is decoded twice in
a worker thread: first at 1/2, 1/4 or 1/8 size (JPEG decodes that fast through DCT scaling) so
something is on screen at once, then at full size. The full image is kept as one ``(h, w, 3)``
uint8 array that the ``QImage`` wraps without a copy (an 8000 x 8000 RGB image is 192 MB: there is
never a second copy); zoomed out, the painter uses the reduced level instead, so a frame never
resamples more source pixels than it needs. Nothing is decoded in ``paint``.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class DecodedLevel:
    """Pixels of one image at ``1/reduce`` of its size; ``size`` is the full ``(width, height)``."""

    image_id: int
    token: int
    pixels: np.ndarray
    reduce: int
    size: tuple[int, int]
    final: bool


class _LoaderSignals(QObject):
    level = Signal(object)  # DecodedLevel
    failed = Signal(int, int, str)  # image_id, token, message


class ImageLoader(QRunnable):
    """Decodes one image of a project in a pool thread, quick preview first for big images.

    Results arrive in the UI thread through ``signals.level`` (a :class:`DecodedLevel`, once or
    twice) or ``signals.failed``. Setting ``cancel`` stops it between the two decodes.
    """

    def __init__(self, project: Project, image_id: int, token: int) -> None:
        super().__init__()
        self.signals = _LoaderSignals()
        self.cancel = threading.Event()
        self._project = project
        self._image_id = image_id
        self._token = token

    def run(self) -> None:  # runs in a pool thread
        try:
            path = self._project.image_path(self._image_id)
            width, height = read_image_size(path)
            reduce = preview_reduction(width, height)
            if reduce > 1:
                preview = read_image(path, reduce=reduce)
                if self.cancel.is_set():
                    return
                self.signals.level.emit(
                    DecodedLevel(self._image_id, self._token, preview, reduce, (width, height), False)
                )
            if self.cancel.is_set():
                return
            full = self._project.read_image(self._image_id)  # also records size and hash in the store
            if self.cancel.is_set():
                return
            self.signals.level.emit(
                DecodedLevel(self._image_id, self._token, full, 1, (full.shape[1], full.shape[0]), True)
            )
        except ImageError as exc:
            self.signals.failed.emit(self._image_id, self._token, str(exc))
        except Exception as exc:  # a vanished project or file: report it, never crash the pool
            self.signals.failed.emit(
                self._image_id, self._token, f"cannot show image {self._image_id}: {type(exc).__name__}: {exc}"
            )


def _wrap(pixels: np.ndarray) -> QImage:
    """A ``QImage`` over the array's memory (no copy); keep ``pixels`` alive while it is used."""
    h, w = pixels.shape[:2]
    return QImage(pixels.data, w, h, int(pixels.strides[0]), QImage.Format.Format_RGB888)


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

    def add_level(self, pixels: np.ndarray, reduce: int, size: tuple[int, int], *, final: bool) -> None:
        """Show ``pixels`` (the image at ``1/reduce`` size). The full level also builds a 1/4 level
        for big images, made by area averaging, for crisp zoomed-out views."""
        if size != self._size:
            self.prepareGeometryChange()
            self._size = size
        pixels = np.ascontiguousarray(pixels)
        self._levels[reduce] = (pixels, _wrap(pixels))
        if final and reduce == 1 and max(size) > PREVIEW_ABOVE and 4 not in self._levels:
            small = cv2.resize(pixels, (max(1, size[0] // 4), max(1, size[1] // 4)), interpolation=cv2.INTER_AREA)
            self._levels[4] = (small, _wrap(small))
        self.update()

    # ---- QGraphicsItem -----------------------------------------------------------------

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._size[0], self._size[1])

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if not self._levels:
            return
        lod = option.levelOfDetailFromTransform(painter.worldTransform())  # screen px per image px
        reduce = min(self._levels)
        for r in sorted(self._levels, reverse=True):
            if lod * r <= 1.5:
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


__all__ = ["DecodedLevel", "ImageLayer", "ImageLoader", "preview_reduction", "start_loader"]
