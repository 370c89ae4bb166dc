"""The image list: every image of the project with its state, filters, counts and thumbnails.

A :class:`ImageListModel` shows an :class:`~labeler.core.image_index.ImageIndex` (ids, paths and
states as arrays, in natural order) through a filtered array of positions: no row object and no
widget per image, so a project of a million images is two aggregate queries.
Thumbnails are decoded on pool threads only when a row is painted (Qt asks ``DecorationRole``
for visible rows only) and cached (LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QImage, QKeyEvent, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from labeler.core.image_index import ImageIndex
from labeler.core.image_state import ImageState, image_state
from labeler.core.store import Project
from labeler.core.uncertainty import describe_uncertainty

THUMB = 48


STATE_COLORS = {
    ImageState.UNLABELLED: QColor(150, 150, 150),
    ImageState.LABELLED: QColor(230, 160, 30),
    ImageState.PROPOSALS: QColor(60, 130, 230),
    ImageState.DONE: QColor(40, 170, 70),
}

# filter name -> states it keeps (None: all)
FILTERS: dict[str, frozenset[ImageState] | None] = {
    "All images": None,
    "Not done": frozenset({ImageState.UNLABELLED, ImageState.LABELLED, ImageState.PROPOSALS}),
    "Unlabelled": frozenset({ImageState.UNLABELLED}),
    "In progress": frozenset({ImageState.LABELLED}),
    "Has proposals": frozenset({ImageState.PROPOSALS}),
    "Done": frozenset({ImageState.DONE}),
}


class _ThumbSignals(QObject):
    loaded = Signal(int, QImage)


class _ThumbJob(QRunnable):
    def __init__(self, path: str, image_id: int, signals: _ThumbSignals) -> None:
        super().__init__()
        self._path = path
        self._id = image_id
        self._signals = signals

    def run(self) -> None:  # pool thread: QImage (not QPixmap) is safe here
        import cv2

        from labeler.core.images import ImageError, read_image, read_image_size
        from labeler.core.tiles import pyramid_info, thumbnail

        try:
            if pyramid_info(self._path) is not None:  # too big to decode whole: shrunk while streaming
                rgb = thumbnail(self._path, THUMB)
            else:
                w, h = read_image_size(self._path)
                reduce = 8 if min(w, h) >= 8 * THUMB else 4 if min(w, h) >= 4 * THUMB else 1
                rgb = read_image(self._path, reduce=reduce)
            scale = THUMB / max(rgb.shape[:2])
            if scale < 1:
                rgb = cv2.resize(
                    rgb,
                    (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                    interpolation=cv2.INTER_AREA,
                )
            rgb = np.ascontiguousarray(rgb)
            image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888).copy()
        except (ImageError, OSError, ValueError):
            image = QImage()
        self._signals.loaded.emit(self._id, image)


class ImageListModel(QAbstractListModel):
    """All images of a project; rows are the images passing the current filter.

    ``Qt.UserRole`` gives the image id. Counts per state are in :meth:`counts`.
    """

    countsChanged = Signal()
    IdRole = Qt.ItemDataRole.UserRole

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._project: Project | None = None
        self._index = ImageIndex.empty()
        self._watermark: tuple[int, float] = (0, 0.0)
        self._rows = np.zeros(0, dtype=np.int64)  # positions in the index passing the filter
        self._present: dict[int, tuple[str, ...]] = {}  # image id -> others who have it open (shared projects)
        self._filter_states: frozenset[ImageState] | None = None
        self._filter_text = ""
        self._thumbs: OrderedDict[int, QPixmap] = OrderedDict()
        self._pending: set[int] = set()
        self._requests = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._thumb_signals = _ThumbSignals(self)
        self._thumb_signals.loaded.connect(self._on_thumb)
        self.thumbnails = True
        self.thumb_cache_size = 600

    # ---- loading --------------------------------------------------------------------------

    def set_project(self, project: Project | None, *, index: ImageIndex | None = None) -> None:
        """Show ``project``'s images: ``index`` when the caller read it off the UI thread
        (:meth:`ImageIndex.load`), else read here (two aggregate queries; no file is opened)."""
        self.beginResetModel()
        self._pool.clear()
        self._project = project
        self._thumbs.clear()
        self._pending.clear()
        if project is None:
            self._index = ImageIndex.empty()
        else:
            self._watermark = project.annotation_watermark()
            self._index = index if index is not None else ImageIndex.load(project)
        self._rows = self._filtered_rows()
        self.endResetModel()
        self.countsChanged.emit()

    def set_presence(self, present: dict[int, tuple[str, ...]]) -> None:
        """Mark the images other people have open (``{image id: their names}``; a shared project)."""
        old, self._present = self._present, dict(present)
        for image_id in set(old) | set(present):
            if old.get(image_id) != present.get(image_id):
                row = self.row_of(image_id)
                if row is not None:
                    top = self.index(row)
                    self.dataChanged.emit(top, top)

    def refresh_image(self, image_id: int) -> None:
        """Re-read one image's state (after an edit, mark done, or an auto-label result)."""
        if self._project is None or self._index.position_of(image_id) is None:
            return
        if self._set_state(image_id, self._read_state(image_id)):
            self.countsChanged.emit()

    def _read_state(self, image_id: int) -> ImageState:
        assert self._project is not None
        record = self._project.image(image_id)
        counts: dict[str, int] = {}
        for ann in self._project.annotations(image_id):
            counts[ann.state.value] = counts.get(ann.state.value, 0) + 1
        return image_state(done=record.done, counts=counts)

    def _set_state(self, image_id: int, state: ImageState) -> bool:
        if not self._index.set_state(image_id, state):
            return False
        row = self.row_of(image_id)
        if row is not None:
            top = self.index(row)
            self.dataChanged.emit(top, top)
        return True

    def refresh_states(self) -> list[int]:
        """Re-read the states of the images whose annotations changed since the last look (not
        every image); returns the ids whose state changed. Used while a background auto-label
        run writes proposals to many images."""
        if self._project is None or not len(self._index):
            return []
        watermark = self._project.annotation_watermark()
        candidates = self._project.images_changed_since(self._watermark)
        self._watermark = watermark
        changed = [
            i for i in candidates if self._index.position_of(i) is not None and self._set_state(i, self._read_state(i))
        ]
        if changed:
            self.countsChanged.emit()
        return changed

    def drop_queued_thumbnails(self) -> None:
        """Forget thumbnails asked for but not started (rows scrolled past); visible rows ask again
        when they are painted."""
        self._pool.clear()
        self._pending.clear()

    def stop_thumbnails(self, msecs: int = 5_000) -> bool:
        """Drop queued thumbnail jobs and wait for the running ones (before the window closes)."""
        self._pool.clear()
        self._pending.clear()
        return self._pool.waitForDone(msecs)

    def wait_for_thumbnails(self, msecs: int = 10_000) -> bool:
        """Block until queued thumbnail jobs ran (tests, screenshots); their results still arrive queued."""
        return self._pool.waitForDone(msecs)

    # ---- filtering ------------------------------------------------------------------------

    def set_filter(self, *, states: frozenset[ImageState] | None = None, text: str | None = None) -> None:
        """Keep images in ``states`` (None: all) whose file name contains ``text`` (case-insensitive)."""
        self._filter_states = states
        if text is not None:
            self._filter_text = text.strip().lower()
        self.beginResetModel()
        self._rows = self._filtered_rows()
        self.endResetModel()

    def _filtered_rows(self) -> np.ndarray:
        if self._filter_states is None and not self._filter_text:
            return np.arange(len(self._index), dtype=np.int64)
        return self._index.filter(states=self._filter_states, text=self._filter_text)

    # ---- queries --------------------------------------------------------------------------

    def counts(self) -> dict[ImageState, int]:
        return self._index.counts()

    def total(self) -> int:
        return len(self._index)

    def image_id_at(self, row: int) -> int | None:
        return self._index.id_at(int(self._rows[row])) if 0 <= row < len(self._rows) else None

    def row_of(self, image_id: int) -> int | None:
        """The row showing ``image_id`` under the current filter, or None."""
        position = self._index.position_of(image_id)
        if position is None:
            return None
        pos = int(np.searchsorted(self._rows, position))
        return pos if pos < len(self._rows) and self._rows[pos] == position else None

    def state_of(self, image_id: int) -> ImageState | None:
        return self._index.state_of(image_id)

    def next_not_done(self, after: int | None) -> int | None:
        """The first image in project order after ``after`` that is not done (wrapping round)."""
        return self._index.next_not_done(after)

    # ---- Qt model -------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        position = int(self._rows[index.row()])
        if role == Qt.ItemDataRole.DisplayRole:
            others = self._present.get(self._index.id_at(position))
            name = self._index.name_at(position)
            return f"{name}\nopen by {', '.join(others)}" if others else name
        if role == self.IdRole:
            return self._index.id_at(position)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{self._index.path_at(position)}\n{self._index.state_at(position).value}"
            others = self._present.get(self._index.id_at(position))
            if others:
                tip += f"\nopen now by {', '.join(others)}"
            if self._project is not None:
                uncertainty = self._project.image(self._index.id_at(position)).uncertainty
                if uncertainty is not None:
                    tip += f"\n{describe_uncertainty(uncertainty)} (the order of “next most uncertain”, U)"
            return tip
        if role == Qt.ItemDataRole.DecorationRole:
            return self._decoration(position)
        return None

    def _decoration(self, position: int) -> QIcon | QPixmap | QColor:
        image_id = self._index.id_at(position)
        state = self._index.state_at(position)
        if not self.thumbnails:
            return STATE_COLORS[state]
        pixmap = self._thumbs.get(image_id)
        if pixmap is None:
            self._request_thumb(image_id, position)
            pixmap = _placeholder(state)
        else:
            self._thumbs.move_to_end(image_id)
            pixmap = _with_badge(pixmap, state)
        return pixmap

    def _request_thumb(self, image_id: int, position: int) -> None:
        if image_id in self._pending or self._project is None:
            return
        self._pending.add(image_id)
        path = str(self._project.root / self._index.path_at(position))
        # the rows asked for last are the ones on screen now: they go first (scrolling fast queues many)
        self._requests = (self._requests + 1) % 2_000_000_000
        self._pool.start(_ThumbJob(path, image_id, self._thumb_signals), self._requests)

    def _on_thumb(self, image_id: int, image: QImage) -> None:
        self._pending.discard(image_id)
        if self._index.position_of(image_id) is None:
            return
        self._thumbs[image_id] = QPixmap.fromImage(image) if not image.isNull() else _broken()
        while len(self._thumbs) > self.thumb_cache_size:
            self._thumbs.popitem(last=False)
        row = self.row_of(image_id)
        if row is not None:
            top = self.index(row)
            self.dataChanged.emit(top, top, [Qt.ItemDataRole.DecorationRole])

    def thumbnail_count(self) -> int:
        return len(self._thumbs)


_PLACEHOLDERS: dict[ImageState, QPixmap] = {}


def _placeholder(state: ImageState) -> QPixmap:
    if state not in _PLACEHOLDERS:
        pixmap = QPixmap(THUMB, THUMB)
        pixmap.fill(QColor(60, 60, 60))
        _PLACEHOLDERS[state] = _with_badge(pixmap, state)
    return _PLACEHOLDERS[state]


def _broken() -> QPixmap:
    pixmap = QPixmap(THUMB, THUMB)
    pixmap.fill(QColor(120, 30, 30))
    return pixmap


def _with_badge(pixmap: QPixmap, state: ImageState) -> QPixmap:
    """The thumbnail centred on a square canvas with a state dot in its corner."""
    from PySide6.QtGui import QPainter

    out = QPixmap(THUMB, THUMB)
    out.fill(QColor(0, 0, 0, 0))
    painter = QPainter(out)
    painter.drawPixmap((THUMB - pixmap.width()) // 2, (THUMB - pixmap.height()) // 2, pixmap)
    painter.setPen(QColor(20, 20, 20))
    painter.setBrush(STATE_COLORS[state])
    painter.drawEllipse(THUMB - 13, THUMB - 13, 11, 11)
    painter.end()
    return out


MIN_LIST_WIDTH = 160
"""The image list never gets narrower than this (a thumbnail and a readable name)."""


class RowDelegate(QStyledItemDelegate):
    """Rows as wide as the list and never wider: a long name elides (in the middle) instead of
    widening every row past the list and cutting the names at its edge behind a scroll bar."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        return QSize(min(size.width(), THUMB + 16), size.height())


class SearchField(QLineEdit):
    """The name filter. Escape, Enter and Return hand the keyboard back (``finished``), so that the
    one-key shortcuts (D, U, M, ...) work again; while it has the focus, keys type into it."""

    finished = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            event.accept()
            self.finished.emit()
            return
        super().keyPressEvent(event)


class ImageListPanel(QWidget):
    """Filter controls, counts and the list view. ``imageActivated(image_id)`` on selection;
    ``searchFinished`` when the user leaves the name filter with Escape or Enter."""

    imageActivated = Signal(int)
    searchFinished = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ImageListModel(self)
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(FILTERS))
        self.filter_combo.setToolTip("Show images in this state")
        self.search = SearchField()
        self.search.finished.connect(self.searchFinished)
        self.search.setPlaceholderText("Filter by name")
        self.search.setToolTip("Show images whose name contains this; Enter or Esc goes back to the image")
        self.search.setClearButtonEnabled(True)
        self.counts_label = QLabel()
        self.counts_label.setWordWrap(True)
        self.counts_label.setTextFormat(Qt.TextFormat.RichText)
        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setUniformItemSizes(True)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # BloodImage_…0042.jpg, not BloodImage_…
        self.view.setItemDelegate(RowDelegate(self.view))
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setIconSize(QSize(THUMB, THUMB))
        self.view.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(200)
        self.setMinimumWidth(MIN_LIST_WIDTH)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(self.filter_combo)
        row.addWidget(self.search, 1)
        layout.addLayout(row)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.view, 1)
        self.filter_combo.currentTextChanged.connect(self._apply_filter)
        self.search.textChanged.connect(self._apply_filter)
        self.model.countsChanged.connect(self._update_counts)
        self.model.modelReset.connect(self._update_counts)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.view.verticalScrollBar().valueChanged.connect(lambda _v: self.model.drop_queued_thumbnails())
        self._current: int | None = None
        self._update_counts()

    def set_project(self, project: Project | None, *, index: ImageIndex | None = None) -> None:
        self._current = None
        self.model.set_project(project, index=index)

    def current_image_id(self) -> int | None:
        return self._current

    def select_image(self, image_id: int | None) -> bool:
        """Make ``image_id`` current (emits ``imageActivated``); clears the filter if it hides it."""
        if image_id is None:
            return False
        row = self.model.row_of(image_id)
        if row is None:
            self.filter_combo.setCurrentIndex(0)
            self.search.clear()
            row = self.model.row_of(image_id)
            if row is None:
                return False
        index = self.model.index(row)
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        return True

    def step(self, delta: int) -> bool:
        """Go ``delta`` rows down (positive) or up in the filtered list; False at an end."""
        rows = self.model.rowCount()
        if not rows:
            return False
        row = self.model.row_of(self._current) if self._current is not None else None
        target = (0 if delta > 0 else rows - 1) if row is None else row + delta
        if not 0 <= target < rows:
            return False
        image_id = self.model.image_id_at(target)
        return self.select_image(image_id)

    def _apply_filter(self, *_: object) -> None:
        self.model.set_filter(states=FILTERS[self.filter_combo.currentText()], text=self.search.text())
        if self._current is not None:
            row = self.model.row_of(self._current)
            if row is not None:
                index = self.model.index(row)
                self.view.selectionModel().blockSignals(True)
                self.view.setCurrentIndex(index)
                self.view.selectionModel().blockSignals(False)
                self.view.scrollTo(index)

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        image_id = self.model.data(current, ImageListModel.IdRole) if current.isValid() else None
        if image_id is not None and image_id != self._current:
            self._current = int(image_id)
            self.imageActivated.emit(self._current)

    def _update_counts(self) -> None:
        counts = self.model.counts()
        shown = self.model.rowCount()
        total = self.model.total()
        parts = [
            f"<span style='color:{STATE_COLORS[s].name()}'>●</span>&nbsp;{counts[s]}&nbsp;{s.value}" for s in ImageState
        ]
        prefix = f"{shown} of {total} shown" if shown != total else f"{total} images"
        self.counts_label.setText(f"{prefix} · " + " · ".join(parts))
