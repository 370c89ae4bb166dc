"""The annotation canvas widget: image, annotation items, tools, and the store behind them.

:class:`AnnotationCanvas` is what the main window embeds (the contract is in ``.notes/GUI.md``).
It owns a scene whose coordinates are image pixels, a :class:`CanvasView` to look at it, an
:class:`ImageLayer` fed by a worker thread, one item per shown annotation, and the tools. Every
change to the store is an undo command pushed on the shared ``QUndoStack``; when a command is done
or undone the canvas re-reads the image's annotations and emits ``annotationsChanged(image_id)``.

Shown: annotations in state proposed or accepted (rejected proposals stay in the store, for the
record, but are not drawn). Proposals hide when their layer is off or their score is under the
threshold; hidden items cannot be selected, edited, accepted or rejected through "all visible".
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QThreadPool, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent, QUndoCommand, QUndoStack
from PySide6.QtWidgets import QGraphicsScene, QMenu, QVBoxLayout, QWidget

from labeler.assist.window import ImagePixels, PixelSource, PyramidPixels
from labeler.core.annotation import Annotation, Category, Kind, State, as_human
from labeler.core.geometry import annotation_box
from labeler.core.proposal_filter import ProposalFilter
from labeler.core.store import Project
from labeler.gui.canvas.assist_tools import AssistTool, OutlineTool
from labeler.gui.canvas.edits import translate
from labeler.gui.canvas.image_layer import DecodedLevel, ImageLayer, ImageLoader, LoaderSignals, start_loader
from labeler.gui.canvas.items import AnnotationItem, make_item
from labeler.gui.canvas.tiled_layer import TiledImageLayer, TileLoader
from labeler.gui.canvas.tools import TOOLS, Tool
from labeler.gui.canvas.view import CanvasView
from labeler.gui.controllers import undo

LAYERS = ("masks", "boxes", "polygons", "proposals")
_LAYER_OF_KIND = {Kind.MASK: "masks", Kind.BOX: "boxes", Kind.POLYGON: "polygons"}
#: How far a duplicate lands from its original, in image pixels (right and down).
DUPLICATE_OFFSET = 10.0
#: Hit tolerance around thin shapes, in screen pixels.
HIT_TOLERANCE_PX = 6.0
#: Class tags show only on labels at least this many screen pixels across (no clutter zoomed out),
#: and at least :data:`TAG_MIN_SHARE` of their tag's width: then thirty boxes of a blood smear do
#: not bury each other under their tags when zoomed out, and all show once zoomed in.
TAG_MIN_PX = 14.0
TAG_MIN_SHARE = 0.75


def _cache_key(ann: Annotation, category: Category | None) -> tuple[object, ...]:
    """What an item depends on: rebuild it only when one of these changes."""
    if ann.kind is Kind.BOX:
        geometry: object = ann.box_xywh
    elif ann.kind is Kind.POLYGON:
        geometry = tuple(p.tobytes() for p in ann.polygons or ())
    else:
        geometry = (ann.rle or {}).get("counts")
    return (ann.state, ann.category_id, ann.score, geometry, category)


class AnnotationCanvas(QWidget):
    """Shows one image of a project with its annotations and edits them with the tools."""

    annotationsChanged = Signal(int)
    selectionChanged = Signal(list)
    imageShown = Signal(int)
    #: The first level of the image shown is whole: at once after ``imageShown``, or, for a PNG
    #: shown while it streams in (see :mod:`.image_layer`), when its last rows arrive.
    imageComplete = Signal(int)
    toolChanged = Signal(str)
    errorOccurred = Signal(str)
    #: Extra signals (beyond the contract): the reduction of the finest level shown (1 = full size),
    #: the zoom (screen pixels per image pixel), the brush diameter in image pixels.
    resolutionChanged = Signal(int)
    zoomChanged = Signal(float)
    brushSizeChanged = Signal(int)
    #: A label was started with no class to give it (the window then asks for one).
    classNeeded = Signal()
    #: The items shown changed (labels re-read, or cleared for another image).
    itemsChanged = Signal()

    def __init__(self, undo_stack: QUndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._undo_stack = undo_stack
        self._project: Project | None = None
        self._image_id: int | None = None
        self._token = 0
        self._loader_cancel: threading.Event | None = None  # drops the decode in flight
        self._stream_cancel: threading.Event | None = None  # stops the first level still streaming in
        self._requested: int | None = None  # the reduction being decoded for the current image
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._loader_signals = LoaderSignals(self)
        self._loader_signals.level.connect(self._on_level)
        self._loader_signals.failed.connect(self._on_failed)
        self._loader_signals.progress.connect(self._on_progress)
        self._loader_signals.rows.connect(self._on_rows)
        self._scene = QGraphicsScene(self)
        self._image_layer = ImageLayer()
        self._image_layer.on_need = self._need_level
        self._scene.addItem(self._image_layer)
        self._tiles = TiledImageLayer(TileLoader(self))  # over the image layer, for gigapixel images
        self._scene.addItem(self._tiles)
        self._items: dict[int, AnnotationItem] = {}
        self._keys: dict[int, tuple[object, ...]] = {}
        self._categories: dict[int, Category] = {}
        self._category_id: int | None = None
        self._brush_size = 20
        self._layers = dict.fromkeys(LAYERS, True)
        self._filter = ProposalFilter(min_score=0.0)  # which proposals are drawn
        self._load_error: str | None = None
        self.last_menu: QMenu | None = None  # the right-click menu last opened (for tests)
        self._mask_opacity = 1.0
        self._hidden: set[int] = set()  # labels the user hid from the object list (this image only)
        self._hover: QPointF | None = None  # where the pointer last moved on the canvas (scene coordinates)
        self._empty_notice = ""
        self._plugin_of_version: dict[int, str] = {}
        self._last_selection: list[int] = []
        self._known_mask: tuple[str, np.ndarray] | None = None  # (RLE counts, pixels) a tool just made
        self._view = CanvasView(self._scene, self)
        self._view.handler = self
        self._view.zoomChanged.connect(self.zoomChanged)
        self._view.zoomChanged.connect(self._update_tags)
        self._view.zoomChanged.connect(self._on_zoom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSizeConstraint(QVBoxLayout.SizeConstraint.SetNoConstraint)  # the window decides its size
        layout.addWidget(self._view)
        self._scene.selectionChanged.connect(self._on_scene_selection)
        self._tools: dict[str, Tool] = {name: cls(self) for name, cls in TOOLS.items()}
        self._tools["assist"] = AssistTool(self)
        self._tools["outline"] = OutlineTool(self)
        self._tool = self._tools["select"]
        self._view.set_tool_cursor(self._tool.cursor)

    # ---- contract: project and image --------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        """Work on ``project`` (``None``: show nothing); another project clears the image.

        Setting the project already shown again keeps the image and zoom, and re-reads the
        classes and the image's annotations (after classes were renamed, recoloured or added).
        """
        if project is not None and project is self._project:
            self._categories = {c.id: c for c in project.categories()}
            self.reload_annotations()
            return
        self.show_image(None)
        self._project = project
        self._plugin_of_version = {}
        self._filter = replace(self._filter, plugin=None)
        self._view.set_notice(self._empty_notice if project is None else "")
        self._categories = {c.id: c for c in project.categories()} if project is not None else {}
        if self._category_id not in self._categories:
            self._category_id = next(iter(self._categories), None)

    def project(self) -> Project | None:
        return self._project

    def show_image(self, image_id: int | None) -> None:
        """Show an image of the project: decoded in a worker thread, big images at reduced size first.

        ``imageShown(image_id)`` follows when the first pixels are there, or ``errorOccurred`` if
        the file cannot be read (the canvas then stays empty). Showing the image already on screen
        again only re-reads its annotations (and emits ``imageShown`` at once).
        """
        if image_id is not None and image_id == self._image_id and self._image_layer.finest_reduction() is not None:
            self.reload_annotations()
            self.imageShown.emit(image_id)
            return
        self._tool.cancel()
        for pending in (self._loader_cancel, self._stream_cancel):
            if pending is not None:
                pending.set()
        self._loader_cancel = self._stream_cancel = None
        self._token += 1
        self._requested = None
        self._clear_items()
        self._image_layer.clear()
        self._tiles.set_pyramid(None)
        self._image_id = image_id
        self._load_error = None
        self._hidden.clear()
        self.itemsChanged.emit()
        self._view.set_notice("")
        if image_id is None or self._project is None:
            self._image_id = None
            self._view.set_notice(self._empty_notice if self._project is None else "")
            return
        vp = self._view.viewport()
        screen_side = int(max(vp.width(), vp.height(), 1) * vp.devicePixelRatio())
        self._start_loader(None, screen_side)

    def _start_loader(self, reduce: int | None, screen_side: int | None = None) -> None:
        """Decode a level of the current image in the pool (``None``: the first level)."""
        assert self._project is not None and self._image_id is not None
        if self._loader_cancel is not None:
            self._loader_cancel.set()
        loader = ImageLoader(
            self._project, self._image_id, self._token, self._loader_signals, reduce=reduce, screen_side=screen_side
        )
        self._loader_cancel = loader.cancel
        self._requested = reduce
        start_loader(self._pool, loader)

    def _need_level(self, reduce: int) -> None:
        """The view shows the image magnified past what the levels held can show: decode the
        level ``reduce`` (1 = full size) in a worker, unless it (or a finer one) is on its way.
        Called from ``paint``, so it only starts a worker."""
        finest = self._image_layer.finest_reduction()
        if self._project is None or self._image_id is None or finest is None or reduce >= finest:
            return
        if self._tiles.pyramid() is not None:
            return  # shown by tiles: never decoded whole
        if self._requested is not None and self._requested <= reduce:
            return
        self._start_loader(reduce)

    def _on_zoom(self, zoom: float) -> None:
        """Ask for a finer level when zoomed in; free the finer levels when zoomed out to where the
        first (coarsest) level is enough."""
        layer = self._image_layer
        if layer.finest_reduction() is None or self._tiles.pyramid() is not None:
            return
        needed = layer.needed_reduction(zoom)
        coarsest = layer.coarsest_reduction()
        if coarsest is not None and needed >= coarsest and layer.drop_finer_than(coarsest):
            if self._requested is not None and self._loader_cancel is not None:
                self._loader_cancel.set()  # a finer level on its way is no longer needed
                self._loader_cancel = None
            self._requested = None
            self.resolutionChanged.emit(coarsest)
            return
        self._need_level(needed)

    def current_image_id(self) -> int | None:
        return self._image_id

    def wait_for_loads(self, timeout_ms: int = 30_000) -> bool:
        """Block until no image decode is running (for shutdown and tests); ``False`` on timeout."""
        return self._pool.waitForDone(timeout_ms) and self._tiles.loader().wait(timeout_ms)

    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the shown image in pixels; ``(0, 0)`` before it is decoded."""
        return self._image_layer.image_size()

    def image_pixels(self) -> PixelSource | None:
        """Where the assisted tools read the shown image: for a gigapixel image its tile pyramid
        (each window read at the resolution the tools work at); otherwise the finest pixels held
        in memory (a view of them, no copy). ``None`` before the image is decoded."""
        pyramid = self._tiles.pyramid()
        if pyramid is not None:
            return PyramidPixels(pyramid)
        level = self._image_layer.finest_level()
        if level is None:
            return None
        reduce, pixels = level
        return ImagePixels(pixels, self.image_size(), reduce=reduce, bgrx=pixels.ndim == 3 and pixels.shape[2] == 4)

    def image_resolution(self) -> int | None:
        """Reduction of the finest level held: 1 for full size, 2/4/8 for a reduced one, None if none.

        Big images are decoded at full size only when the view zooms in near 1:1 (see
        :mod:`.image_layer`); ``resolutionChanged`` reports each change."""
        return self._image_layer.finest_reduction()

    def _on_level(self, level: DecodedLevel) -> None:
        if level.token != self._token or level.image_id != self._image_id:
            return
        finest = self._image_layer.finest_reduction()
        first = finest is None
        if level.reduce == self._requested or first:
            if first and level.ready_rows is not None:
                self._stream_cancel = self._loader_cancel  # still filling: a new image stops it
            self._loader_cancel = None
            self._requested = None
        if finest is not None and level.reduce >= finest:
            return  # a level no finer than what is shown (the view zoomed out meanwhile)
        self._image_layer.add_level(level.reduce, level.pixels, level.size, ready_rows=level.ready_rows)
        if level.pyramid is not None:
            self._view.set_notice("")
            self._tiles.set_pyramid(level.pyramid, overview_level=level.reduce.bit_length() - 1)
        if first:
            w, h = level.size
            self._view.set_content_rect(QRectF(0, 0, w, h))
            self._view.fit()
            self.reload_annotations()
        self.resolutionChanged.emit(level.reduce)
        if first:
            self.imageShown.emit(level.image_id)
            if level.ready_rows is None:
                self.imageComplete.emit(level.image_id)

    def _on_rows(self, image_id: int, token: int, reduce: int, rows: int) -> None:
        """More rows of the first level arrived while it streams in (the loader filled them in
        place): draw them; at the last band the level is whole."""
        if token != self._token or image_id != self._image_id:
            return
        if self._image_layer.set_ready_rows(reduce, rows) and not self._image_layer.is_partial():
            self._stream_cancel = None
            self.imageComplete.emit(image_id)

    def image_complete(self) -> bool:
        """Whether the image shown is there whole (not still streaming in, nor still loading)."""
        return self._image_layer.finest_reduction() is not None and not self._image_layer.is_partial()

    def _on_progress(self, image_id: int, token: int, text: str) -> None:
        if token == self._token and image_id == self._image_id and self._image_layer.finest_reduction() is None:
            self._view.set_notice(text)

    def tiled_layer(self) -> TiledImageLayer:
        """The layer that paints the tiles of a gigapixel image (see :mod:`.tiled_layer`)."""
        return self._tiles

    def _on_failed(self, image_id: int, token: int, message: str) -> None:
        if token != self._token or image_id != self._image_id:
            return
        self._loader_cancel = None
        self._requested = None
        if self._image_layer.finest_reduction() is not None and not self._image_layer.is_partial():
            self.errorOccurred.emit(message)  # a finer level failed: keep what is shown
            return
        self._stream_cancel = None  # (a file found damaged while it streamed in fails as a whole)
        self._clear_items()
        self._image_layer.clear()
        self._tiles.set_pyramid(None)
        self._load_error = message
        self._view.set_notice(
            f"This image cannot be shown.\n{message}\n\nIt cannot be marked done until the file is fixed or replaced."
        )
        self.errorOccurred.emit(message)

    def failure_text(self) -> str:
        """Why the current image cannot be shown (as the canvas says it), or ``""``."""
        return f"This image cannot be shown:\n{self._load_error}" if self._load_error else ""

    def load_error(self) -> str | None:
        """Why the current image could not be read (``None`` if it shows, or is still loading)."""
        return self._load_error

    def set_empty_notice(self, text: str) -> None:
        """What the canvas says while no project is open."""
        self._empty_notice = text
        if self._project is None:
            self._view.set_notice(text)

    # ---- contract: annotations -------------------------------------------------------------

    def reload_annotations(self) -> None:
        """Re-read the current image's annotations (and the classes) from the store.

        Items whose annotation did not change are kept (so are their selection and masks
        already rendered); the others are rebuilt.
        """
        project, image_id = self._project, self._image_id
        if project is None or image_id is None or self._image_layer.finest_reduction() is None:
            return
        self._categories = {c.id: c for c in project.categories()}
        anns = project.annotations(image_id, states=(State.PROPOSED, State.ACCEPTED))
        if any(a.model_version is not None and a.model_version not in self._plugin_of_version for a in anns):
            self._plugin_of_version = {int(v.id or 0): v.plugin for v in project.model_versions()}
        selected = set(self.selected_ids())
        seen: set[int] = set()
        self._scene.blockSignals(True)
        try:
            for ann in anns:
                assert ann.id is not None
                seen.add(ann.id)
                category = self._categories.get(ann.category_id)
                key = _cache_key(ann, category)
                item = self._items.get(ann.id)
                if item is not None and self._keys.get(ann.id) == key:
                    item.ann = ann
                    continue
                if item is not None:
                    self._scene.removeItem(item)
                item = make_item(ann, category, self._take_known_mask(ann))
                if ann.kind is Kind.MASK:
                    item.setOpacity(self._mask_opacity)
                if ann.is_proposal:
                    item.setZValue(item.zValue() + 50)
                    score = f", score {ann.score:.2f}" if ann.score is not None else ""
                    item.setToolTip(f"proposal by {self.plugin_of(ann)} (version #{ann.model_version}){score}")
                self._scene.addItem(item)
                self._items[ann.id] = item
                self._keys[ann.id] = key
                item.setSelected(ann.id in selected)
            for ann_id in [i for i in self._items if i not in seen]:
                self._scene.removeItem(self._items.pop(ann_id))
                self._keys.pop(ann_id, None)
            self._apply_visibility()
        finally:
            self._scene.blockSignals(False)
            self._known_mask = None
        self._tool.items_reloaded()  # drawing in progress survives labels arriving meanwhile
        self._on_scene_selection()
        self.itemsChanged.emit()

    def remember_mask(self, rle: dict[str, object], mask: np.ndarray) -> None:
        """A tool hands over the pixels of an RLE it just encoded, so the reload after its command
        need not decode them again (big masks take a while)."""
        self._known_mask = (str(rle["counts"]), mask)

    def _take_known_mask(self, ann: Annotation) -> np.ndarray | None:
        known, self._known_mask = self._known_mask, None
        if known is not None and ann.kind is Kind.MASK and ann.rle is not None and ann.rle.get("counts") == known[0]:
            return known[1]
        return None

    def annotation_items(self) -> dict[int, AnnotationItem]:
        """The items shown, by annotation id (for tools and tests)."""
        return dict(self._items)

    def visible_items(self) -> list[AnnotationItem]:
        return [i for i in self._items.values() if i.isVisible()]

    def _clear_items(self) -> None:
        had_selection = bool(self._last_selection)
        self._scene.blockSignals(True)
        for item in self._items.values():
            self._scene.removeItem(item)
        self._scene.blockSignals(False)
        self._items.clear()
        self._keys.clear()
        self._last_selection = []
        if had_selection:
            self.selectionChanged.emit([])

    # ---- contract: tools and settings -----------------------------------------------------

    def set_tool(self, tool: str) -> None:
        """``"select"``, ``"box"``, ``"polygon"``, ``"brush"`` or ``"eraser"``."""
        if tool not in self._tools:
            raise ValueError(f"unknown tool {tool!r}; one of {', '.join(self._tools)}")
        if self._tools[tool] is self._tool:
            return
        self._tool.deactivate()
        self._tool = self._tools[tool]
        self._tool.activate()
        self._view.set_tool_cursor(self._tool.cursor)
        self.toolChanged.emit(tool)

    def tool(self) -> str:
        return self._tool.name

    def tool_hint(self) -> str:
        """The active tool's one-line help."""
        return self._tool.hint

    def set_category(self, category_id: int) -> None:
        """The class of new labels (and of the brush)."""
        self._category_id = int(category_id)

    def category_id(self) -> int | None:
        return self._category_id

    def categories(self) -> list[Category]:
        """The project's classes, in their order."""
        return list(self._categories.values())

    def context_menu(self, pos: QPointF, global_pos: QPoint) -> None:
        """Right click: the label menu (change class, accept, reject, delete) for the label there."""
        from labeler.gui.canvas.context_menu import open_label_menu

        if self._usable():
            self.last_menu = open_label_menu(self, pos, global_pos)

    def category(self, category_id: int) -> Category | None:
        """The class with this id (re-read from the store if it was added since the last reload)."""
        found = self._categories.get(category_id)
        if found is None and self._project is not None:
            self._categories = {c.id: c for c in self._project.categories()}
            found = self._categories.get(category_id)
        return found

    def set_brush_size(self, pixels: int) -> None:
        """Brush and eraser diameter in image pixels (at least 1)."""
        size = max(1, int(pixels))
        if size != self._brush_size:
            self._brush_size = size
            self._tool.settings_changed()
            self.brushSizeChanged.emit(size)

    def brush_size(self) -> int:
        return self._brush_size

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        """Show or hide a layer: ``"masks"``, ``"boxes"``, ``"polygons"`` or ``"proposals"``."""
        if layer not in self._layers:
            raise ValueError(f"unknown layer {layer!r}; one of {', '.join(LAYERS)}")
        self._layers[layer] = bool(visible)
        self._apply_visibility()

    def layer_visible(self, layer: str) -> bool:
        return self._layers[layer]

    def set_score_threshold(self, threshold: float) -> None:
        """Hide proposals whose score is under ``threshold`` (0..1)."""
        self._filter = replace(self._filter, min_score=max(0.0, min(1.0, float(threshold))))
        self._apply_visibility()

    def score_threshold(self) -> float:
        return self._filter.min_score

    def set_proposal_plugin(self, plugin: str | None) -> None:
        """Show only the proposals made by ``plugin``'s model versions (``None``: every plugin's)."""
        self._filter = replace(self._filter, plugin=plugin)
        self._apply_visibility()

    def proposal_plugin(self) -> str | None:
        return self._filter.plugin

    def proposal_filter(self) -> ProposalFilter:
        """Which proposals are shown (score threshold and plugin)."""
        return self._filter

    def plugin_of(self, ann: Annotation) -> str:
        """The plugin whose model version made ``ann`` (``"a person"`` for a human label)."""
        if ann.model_version is None:
            return "a person"
        return self._plugin_of_version.get(ann.model_version, f"version #{ann.model_version}")

    def set_mask_opacity(self, opacity: float) -> None:
        """How opaque masks are drawn, 0..1 (1: as styled); their tags stay readable."""
        self._mask_opacity = max(0.0, min(1.0, float(opacity)))
        for item in self._items.values():
            if item.ann.kind is Kind.MASK:
                item.setOpacity(self._mask_opacity)

    def mask_opacity(self) -> float:
        return self._mask_opacity

    def set_hidden(self, annotation_id: int, hidden: bool) -> None:
        """Hide one label from view (until another image is shown), or show it again."""
        (self._hidden.add if hidden else self._hidden.discard)(int(annotation_id))
        self._apply_visibility()

    def is_hidden(self, annotation_id: int) -> bool:
        return int(annotation_id) in self._hidden

    def centre_on(self, annotation_id: int) -> None:
        """Bring a label into view; a label too small to see at this zoom is zoomed to."""
        item = self._items.get(int(annotation_id))
        if item is None:
            return
        x, y, w, h = annotation_box(item.ann)
        side = max(w, h) * self._view.scale_factor()
        if side < 24:  # tiny on screen: zoom so it is about 48 screen pixels
            self._view.zoom_by(48 / max(side, 1e-3))
        self._view.centerOn(QPointF(x + w / 2, y + h / 2))

    def is_shown(self, ann: Annotation) -> bool:
        """Whether ``ann`` passes the layer toggles, the score threshold, the plugin filter and
        is not hidden from the object list."""
        if not self._layers[_LAYER_OF_KIND[ann.kind]]:
            return False
        if ann.id is not None and ann.id in self._hidden:
            return False
        if ann.is_proposal:
            if not self._layers["proposals"]:
                return False
            return self._filter.passes(score=ann.score, plugin=self.plugin_of(ann))
        return True

    def _apply_visibility(self) -> None:
        for item in self._items.values():
            item.setVisible(self.is_shown(item.ann))
        self._update_tags()

    def _update_tags(self, *_: object) -> None:
        scale = self._view.scale_factor()
        for item in self._items.values():
            r = item.boundingRect()
            need = max(TAG_MIN_PX, TAG_MIN_SHARE * item.tag.boundingRect().width())
            item.tag.setVisible(max(r.width(), r.height()) * scale >= need)

    def fit_to_window(self) -> None:
        self._view.fit()

    def zoom_actual_size(self) -> None:
        self._view.actual_size()

    def view(self) -> CanvasView:
        return self._view

    def scene(self) -> QGraphicsScene:
        return self._scene

    # ---- contract: selection and actions ---------------------------------------------------

    def selected_ids(self) -> list[int]:
        return sorted(ann_id for ann_id, item in self._items.items() if item.isSelected())

    def select(self, ids: list[int]) -> None:
        """Select exactly these annotations (hidden ones are skipped)."""
        wanted = set(ids)
        self._scene.blockSignals(True)
        for ann_id, item in self._items.items():
            item.setSelected(ann_id in wanted and item.isVisible())
        self._scene.blockSignals(False)
        self._on_scene_selection()

    def _on_scene_selection(self) -> None:
        ids = self.selected_ids()
        if ids != self._last_selection:
            self._last_selection = ids
            self.selectionChanged.emit(ids)

    def _annotations(self, ids: list[int], *, proposals_only: bool = False) -> list[Annotation]:
        out = []
        for ann_id in ids:
            item = self._items.get(ann_id)
            if item is not None and (item.ann.is_proposal or not proposals_only):
                out.append(item.ann)
        return out

    def accept(self, ids: list[int]) -> None:
        """Accept these proposals (one undo step); ids that are not proposals are ignored."""
        self._set_states(ids, State.ACCEPTED)

    def reject(self, ids: list[int]) -> None:
        """Reject these proposals (one undo step): they stay in the store, no longer drawn."""
        self._set_states(ids, State.REJECTED)

    def accept_all_visible(self) -> None:
        self.accept([i.ann.id for i in self.visible_items() if i.ann.is_proposal and i.ann.id is not None])

    def reject_all_visible(self) -> None:
        self.reject([i.ann.id for i in self.visible_items() if i.ann.is_proposal and i.ann.id is not None])

    def _set_states(self, ids: list[int], state: State) -> None:
        anns = self._annotations(ids, proposals_only=True)
        if anns and self._project is not None:
            self.push(undo.set_states(self._project, anns, state, notify=self._notify, on_error=self._error))

    def delete_selected(self) -> None:
        anns = self._annotations(self.selected_ids())
        if anns and self._project is not None:
            self.push(undo.delete_annotations(self._project, anns, notify=self._notify, on_error=self._error))

    def duplicate_selected(self) -> None:
        """Copy the selected labels, shifted right and down, as new human labels; selects the copies."""
        anns = self._annotations(self.selected_ids())
        w, h = self.image_size()
        if not anns or self._project is None or w == 0:
            return
        copies = [
            replace(
                as_human(translate(a, DUPLICATE_OFFSET, DUPLICATE_OFFSET, w, h)),
                id=None,
                created=None,
                updated=None,
            )
            for a in anns
        ]
        cmd = undo.add_annotations(self._project, copies, text="Duplicate", notify=self._notify, on_error=self._error)
        if self.push(cmd):
            self.select(cmd.added_ids())

    def change_class_selected(self, category_id: int) -> None:
        """Give the selected labels another class (proposals become human labels)."""
        anns = [a for a in self._annotations(self.selected_ids()) if a.category_id != category_id or a.is_proposal]
        if anns and self._project is not None:
            pairs = [(a, replace(a, category_id=int(category_id))) for a in anns]
            self.push(
                undo.edit_annotations(
                    self._project, pairs, text="Change class", notify=self._notify, on_error=self._error
                )
            )

    # ---- for tools (what they may use is :class:`~labeler.gui.canvas.host.ToolHost`) ------------

    def push(self, command: QUndoCommand) -> bool:
        """Push a command (which does it); ``False`` if the store refused it (error reported)."""
        self._undo_stack.push(command)
        return getattr(command, "error", None) is None

    def edit(self, pairs: list[tuple[Annotation, Annotation]], text: str) -> bool:
        """Overwrite annotations as one undo step (edited proposals become human labels)."""
        if self._project is None or not pairs:
            return False
        return self.push(
            undo.edit_annotations(self._project, pairs, text=text, notify=self._notify, on_error=self._error)
        )

    def add(self, anns: list[Annotation], *, text: str | None = None, seconds: float | None = None) -> list[int]:
        """Add new labels as one undo step; returns their ids."""
        if self._project is None or not anns:
            return []
        cmd = undo.add_annotations(
            self._project, anns, text=text, notify=self._notify, on_error=self._error, draw_seconds=seconds
        )
        return cmd.added_ids() if self.push(cmd) else []

    def change(self, pairs: list[undo.Pair], text: str, *, seconds: float | None = None) -> bool:
        """Any mix of add / edit / delete as one undo step (see :class:`undo.ChangeAnnotations`)."""
        if self._project is None or not pairs:
            return False
        fixed: list[undo.Pair] = [(b, as_human(a) if (a is not None and b is not None) else a) for b, a in pairs]
        return self.push(
            undo.ChangeAnnotations(
                self._project, fixed, text, notify=self._notify, on_error=self._error, draw_seconds=seconds
            )
        )

    def tolerance(self) -> float:
        """Hit tolerance in image pixels at the current zoom."""
        return HIT_TOLERANCE_PX / max(self._view.scale_factor(), 1e-6)

    def item_at(self, pos: QPointF) -> AnnotationItem | None:
        """The visible item under ``pos``; the smallest wins where items overlap."""
        tol = self.tolerance()
        hits = [i for i in self.visible_items() if i.hit(pos, tol)]
        return min(hits, key=lambda i: (i.area(), -i.zValue())) if hits else None

    def _notify(self, image_id: int) -> None:
        if image_id == self._image_id:
            self.reload_annotations()
        self.annotationsChanged.emit(image_id)

    def _error(self, message: str) -> None:
        self.errorOccurred.emit(message)

    def report(self, message: str) -> None:
        """A tool tells the user why an edit did not happen (``errorOccurred``)."""
        self.errorOccurred.emit(message)

    def ask_for_class(self) -> None:
        """A tool started a label with no class to give it (``classNeeded``: the window asks)."""
        self.classNeeded.emit()

    # ---- mouse and keys (from the view) ------------------------------------------------------

    def mouse_press(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._usable():
            self._tool.press(pos, event)

    def mouse_left(self) -> None:
        """The pointer left the canvas: no proposal is "under the cursor" any more."""
        self._hover = None

    def proposal_targets(self) -> list[int]:
        """The proposals that Y / X act on: the selected ones; else the shown one under the
        pointer; else the only one shown."""
        shown = {i.ann.id: i for i in self.visible_items() if i.ann.is_proposal and i.ann.id is not None}
        selected = [i for i in self.selected_ids() if i in shown]
        if selected:
            return selected
        if self._hover is not None:
            tol = self.tolerance()
            hits = [i for i in shown.values() if i.hit(self._hover, tol)]
            if hits:
                return [int(min(hits, key=lambda i: i.area()).ann.id or 0)]
        return [int(i) for i in shown] if len(shown) == 1 else []

    def mouse_move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._hover = QPointF(pos)
        if self._usable():
            self._tool.move(pos, event)

    def mouse_release(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._usable():
            self._tool.release(pos, event)

    def mouse_double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._usable():
            self._tool.double_click(pos, event)

    def key_press(self, event: QKeyEvent) -> bool:
        if self._usable() and self._tool.key(event):
            return True
        key = event.key()
        if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.delete_selected()
            return True
        if key == Qt.Key.Key_Escape:
            self.select([])
            return True
        if key == Qt.Key.Key_BracketLeft:
            self.set_brush_size(max(1, round(self._brush_size / 1.25)))
            return True
        if key == Qt.Key.Key_BracketRight:
            self.set_brush_size(max(self._brush_size + 1, round(self._brush_size * 1.25)))
            return True
        return False

    def wants_key(self, event: QKeyEvent) -> bool:
        """Whether the active tool is using ``event``'s key now (so window shortcuts must wait)."""
        return self._usable() and self._tool.wants_key(event)

    def _usable(self) -> bool:
        return self._project is not None and self._image_id is not None and self.image_size()[0] > 0
