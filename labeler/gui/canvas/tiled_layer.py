"""Gigapixel images on the canvas: the visible tiles of the pyramid level that matches the zoom.

For an image shown through a :class:`~labeler.core.tiles.TilePyramid`, the :class:`ImageLayer`
below holds only a small overview level (see :data:`~.image_layer.OVERVIEW_SIDE`); this
layer, drawn over it, paints the tiles of the level whose pixels are about one screen pixel at the
current zoom (:func:`~labeler.core.tiles.level_for_zoom`) wherever it has them, else a coarser
tile it has, else nothing (the overview shows through). ``paint`` never decodes: it draws what is
in the :class:`TileCache` (decoded tiles, least recently used dropped first, bounded in bytes)
and tells the :class:`TileLoader` which tiles the view lacks; pool threads read them (nearest the
view's centre first, only those still visible) and each arrives in the UI thread through a queued
signal, which repaints that tile's rectangle.

Scene coordinates stay full-resolution image pixels: tile ``(col, row)`` of level ``k`` covers
``[col * TILE * 2**k, ...)`` of the scene, so annotations and tools never see the levels.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable

import numpy as np
from PySide6.QtCore import QObject, QRectF, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from labeler.core.images import ImageError
from labeler.core.tiles import TILE, TilePyramid, level_for_zoom, tiles_in_rect
from labeler.gui.canvas.image_layer import MAX_MAGNIFICATION, to_qt32

#: Decoded tiles kept, in bytes (a 256 x 256 tile is 256 KB as 32-bit pixels: 1024 tiles, about
#: five screens of a 4K monitor).
TILE_CACHE_BYTES = 256 * 1024 * 1024
#: Threads reading tiles.
TILE_THREADS = 2

TileKey = tuple[int, int, int]
"""``(level, col, row)`` of a tile."""


class TileCache:
    """Decoded tiles, ``{key: (pixels, qimage)}``, the least recently used dropped first once
    they hold more than ``max_bytes`` (the UI thread's alone: no lock)."""

    def __init__(self, max_bytes: int = TILE_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[TileKey, tuple[np.ndarray, QImage]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._tiles)

    def __contains__(self, key: object) -> bool:
        return key in self._tiles

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: TileKey) -> QImage | None:
        entry = self._tiles.get(key)
        if entry is None:
            return None
        self._tiles.move_to_end(key)
        return entry[1]

    def put(self, key: TileKey, pixels: np.ndarray) -> None:
        """Keep ``pixels`` (``(h, w, 4)`` in ``QImage.Format_RGB32`` order) as tile ``key``."""
        old = self._tiles.pop(key, None)
        if old is not None:
            self._bytes -= old[0].nbytes
        h, w = pixels.shape[:2]
        image = QImage(pixels.data, w, h, int(pixels.strides[0]), QImage.Format.Format_RGB32)
        self._tiles[key] = (pixels, image)
        self._bytes += pixels.nbytes
        while self._bytes > self.max_bytes and len(self._tiles) > 1:
            _, (dropped, _) = self._tiles.popitem(last=False)
            self._bytes -= dropped.nbytes

    def clear(self) -> None:
        self._tiles.clear()
        self._bytes = 0


class _TileQueue:
    """The tiles wanted now, shared by the UI thread and the readers (under one lock): the most
    wanted is read first; a reader that finds the queue empty retires in the same step, so a tile
    queued is never left without a reader."""

    def __init__(self, threads: int) -> None:
        self._lock = threading.Lock()
        self._queue: deque[TileKey] = deque()  # the right end is read next
        self._queued: set[TileKey] = set()
        self._reading: set[TileKey] = set()
        self._pyramid: TilePyramid | None = None
        self._token = 0
        self._readers = 0
        self._threads = threads

    def reset(self, pyramid: TilePyramid | None, token: int) -> None:
        with self._lock:
            self._queue.clear()
            self._queued.clear()
            self._reading.clear()
            self._pyramid = pyramid
            self._token = token

    def want(self, keys: list[TileKey], *, only: bool) -> int:
        """Queue ``keys``, the most wanted first; with ``only`` they replace the queue (tiles no
        longer in view are not read), else they go before what is queued. Returns how many readers
        to start."""
        with self._lock:
            fresh = [k for k in keys if k not in self._reading and (only or k not in self._queued)]
            if only:
                self._queue = deque(reversed(fresh))
                self._queued = set(fresh)
            else:
                self._queue.extend(reversed(fresh))
                self._queued.update(fresh)
            start = max(0, min(self._threads - self._readers, len(self._queue)))
            self._readers += start
            return start

    def take(self) -> tuple[int, TilePyramid, TileKey] | None:
        """``(token, pyramid, key)`` of the next tile to read, or ``None`` (the reader retires)."""
        with self._lock:
            if not self._queue or self._pyramid is None:
                self._readers -= 1
                return None
            key = self._queue.pop()
            self._queued.discard(key)
            self._reading.add(key)
            return self._token, self._pyramid, key

    def done(self, key: TileKey) -> None:
        with self._lock:
            self._reading.discard(key)

    def pending(self) -> int:
        """Tiles queued or being read."""
        with self._lock:
            return len(self._queued) + len(self._reading)


class _TileReader(QRunnable):
    """Reads queued tiles in a pool thread until the queue is empty."""

    def __init__(self, queue: _TileQueue, loader: TileLoader) -> None:
        super().__init__()
        self._queue = queue
        self._loader = loader

    def run(self) -> None:  # runs in a pool thread
        while (job := self._queue.take()) is not None:
            token, pyramid, key = job
            try:
                pixels = to_qt32(pyramid.read_tile(*key))
            except (ImageError, ValueError) as exc:
                self._loader.failed.emit(token, key, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a vanished file or cache: report it, never crash the pool
                self._loader.failed.emit(token, key, f"cannot read a tile: {type(exc).__name__}: {exc}")
                continue
            self._loader.tileReady.emit(token, key, pixels)


class TileLoader(QObject):
    """Reads tiles of the current pyramid in its own pool; results arrive in the UI thread as
    ``tileReady(token, key, pixels)`` (``pixels``: ``(h, w, 4)`` ``Format_RGB32``) or
    ``failed(token, key, message)``; ``token`` tells results of an earlier image apart."""

    tileReady = Signal(int, object, object)
    failed = Signal(int, object, str)

    def __init__(self, parent: QObject | None = None, *, threads: int = TILE_THREADS) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._queue = _TileQueue(threads)
        self.token = 0

    def reset(self, pyramid: TilePyramid | None) -> int:
        """Read tiles of ``pyramid`` from now on (``None``: none); returns the new token."""
        self.token += 1
        self._queue.reset(pyramid, self.token)
        return self.token

    def want(self, keys: Iterable[TileKey], *, only: bool = True) -> None:
        """The view lacks these tiles, most wanted first (see :meth:`_TileQueue.want`)."""
        for _ in range(self._queue.want(list(keys), only=only)):
            reader = _TileReader(self._queue, self)
            reader.setAutoDelete(True)
            self._pool.start(reader)

    def done(self, key: TileKey) -> None:
        self._queue.done(key)

    def pending(self) -> int:
        """Tiles queued or being read."""
        return self._queue.pending()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self._pool.waitForDone(timeout_ms)


class TiledImageLayer(QGraphicsItem):
    """Paints a pyramid's tiles at scene scale 1 = one full-resolution pixel (see the module)."""

    def __init__(self, loader: TileLoader, *, max_bytes: int = TILE_CACHE_BYTES) -> None:
        super().__init__()
        self._loader = loader
        self._cache = TileCache(max_bytes)
        self._pyramid: TilePyramid | None = None
        self._overview = 0
        self._token = 0
        self._last_error: str | None = None
        self._failed: set[TileKey] = set()  # not asked for again (until another image)
        loader.tileReady.connect(self._on_tile)
        loader.failed.connect(self._on_failed)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setZValue(-999)  # over the image layer's overview, under every annotation

    def set_pyramid(self, pyramid: TilePyramid | None, overview_level: int = 0) -> None:
        """Show ``pyramid`` (``None``: nothing); ``overview_level`` is the level the image layer
        below holds whole: at that zoom or further out this layer draws nothing."""
        self.prepareGeometryChange()
        self._cache.clear()
        self._pyramid = pyramid
        self._overview = overview_level
        self._last_error = None
        self._failed.clear()
        self._token = self._loader.reset(pyramid)
        self.update()

    def pyramid(self) -> TilePyramid | None:
        return self._pyramid

    def loader(self) -> TileLoader:
        return self._loader

    def cache(self) -> TileCache:
        return self._cache

    def last_error(self) -> str | None:
        """The last tile that could not be read, said in one line (``None`` if none)."""
        return self._last_error

    def _on_tile(self, token: int, key: TileKey, pixels: np.ndarray) -> None:
        self._loader.done(key)
        if token != self._token or self._pyramid is None:
            return
        self._cache.put(key, pixels)
        self.update(self._scene_rect(key))

    def _on_failed(self, token: int, key: TileKey, message: str) -> None:
        self._loader.done(key)
        if token == self._token:
            self._failed.add(key)
            self._last_error = message

    def _scene_rect(self, key: TileKey) -> QRectF:
        assert self._pyramid is not None
        level, col, row = key
        x, y, w, h = self._pyramid.tile_rect(level, col, row)
        s = self._pyramid.levels[level].scale
        return QRectF(x * s, y * s, w * s, h * s)

    # ---- QGraphicsItem -----------------------------------------------------------------

    def boundingRect(self) -> QRectF:
        if self._pyramid is None:
            return QRectF()
        return QRectF(0, 0, self._pyramid.size[0], self._pyramid.size[1])

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        pyramid = self._pyramid
        if pyramid is None:
            return
        lod = option.levelOfDetailFromTransform(painter.worldTransform())  # screen px per image px
        if widget is not None:
            lod *= widget.devicePixelRatioF()  # device pixels on a HiDPI screen
        level = level_for_zoom(pyramid.levels, lod, max_magnification=MAX_MAGNIFICATION)
        if level >= self._overview:
            if widget is not None:
                self._loader.want([], only=True)  # zoomed out: tiles queued for a finer view are not read
            return  # the overview below is fine enough
        bounds = self.boundingRect()
        exposed = option.exposedRect.intersected(bounds)
        if exposed.isEmpty():
            return
        lv = pyramid.levels[level]
        shown = tiles_in_rect(lv, exposed.left(), exposed.top(), exposed.right(), exposed.bottom())
        missing: list[TileKey] = []
        fallback: dict[TileKey, QImage] = {}
        for col, row in shown:
            key = (level, col, row)
            if key in self._cache:
                continue
            if key not in self._failed:
                missing.append(key)
            for coarser in range(level + 1, self._overview):  # the nearest coarser tile held
                shift = coarser - level
                parent = (coarser, col >> shift, row >> shift)
                image = self._cache.get(parent)
                if image is not None:
                    fallback[parent] = image
                    break
        painter.save()
        painter.setClipRect(exposed)
        for key, image in sorted(fallback.items(), key=lambda kv: -kv[0][0]):  # coarsest first
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self._scene_rect(key), image)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, lod * lv.scale < 2.0)
        for col, row in shown:
            image = self._cache.get((level, col, row))
            if image is not None:
                painter.drawImage(self._scene_rect((level, col, row)), image)
        painter.restore()
        self._request(painter, widget, level, missing)

    def _request(self, painter: QPainter, widget: QWidget | None, level: int, missing: list[TileKey]) -> None:
        """Ask for the tiles the whole view lacks (so tiles no longer in view are dropped from the
        queue), or, drawn outside a view, those this paint lacked."""
        assert self._pyramid is not None
        if widget is None:
            if missing:
                self._loader.want(missing, only=False)
            return
        inverse, ok = painter.worldTransform().inverted()
        if not ok:
            return
        view = inverse.mapRect(QRectF(widget.rect())).intersected(self.boundingRect())
        if view.isEmpty():
            return
        lv = self._pyramid.levels[level]
        wanted = [
            (level, c, r)
            for c, r in tiles_in_rect(lv, view.left(), view.top(), view.right(), view.bottom())
            if (level, c, r) not in self._cache and (level, c, r) not in self._failed
        ]
        self._loader.want(wanted, only=True)


__all__ = ["TILE", "TileCache", "TileLoader", "TiledImageLayer"]
