"""The main window: canvas in the middle, image list on the left, classes, proposals and model
panels on the right, menus and tool bar from :mod:`labeler.gui.actions`.

The window holds no business logic: it opens a :class:`~labeler.core.store.Project`, hands it to
the panels and the canvas, and runs long work through the controllers (threads and child
processes).
"""

from __future__ import annotations

import time
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QResizeEvent, QShowEvent, QUndoStack
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from labeler.core.annotation import Annotation, State
from labeler.core.done import done_refusal
from labeler.core.image_index import ImageIndex, remember_id_order
from labeler.core.live import Change
from labeler.core.location import child_project, location_name, split_password
from labeler.core.pg import database_errors, is_database_url, redact
from labeler.core.review import ReviewClock, log_review
from labeler.core.store import PRESENCE_TTL, Project, ProjectError
from labeler.core.uncertainty import describe_uncertainty, next_most_uncertain_image
from labeler.gui.actions import ActionId, WindowActions, build_actions
from labeler.gui.canvas import AnnotationCanvas
from labeler.gui.controllers.autolabel_run import AutoLabelController
from labeler.gui.controllers.live import LiveUpdates
from labeler.gui.controllers.training_run import TrainingController
from labeler.gui.controllers.workers import FunctionWorker
from labeler.gui.dialogs.shared_project import ask_shared_project
from labeler.gui.icons import app_icon
from labeler.gui.layout import LIST_WIDTH, PANEL_WIDTH, READABLE_PANEL_WIDTH, PanelSqueeze
from labeler.gui.panels.autolabel_panel import AutoLabelPanel
from labeler.gui.panels.classes import ClassListPanel
from labeler.gui.panels.image_list import ImageListPanel
from labeler.gui.panels.models import ModelListPanel
from labeler.gui.panels.objects import ObjectsPanel
from labeler.gui.panels.proposals import ProposalsPanel
from labeler.gui.panels.training_panel import TrainingPanel
from labeler.gui.settings import AppSettings
from labeler.gui.status import StatusBar
from labeler.learning.installed import installed_plugins, plugin_descriptions
from labeler.learning.retrain import RetrainPolicy

if TYPE_CHECKING:
    from labeler.gui.dialogs.transfer_dialogs import ImportDialog

OPEN_HINT = "Open a project, or a folder of images, with File ▸ Open (Ctrl+O)"


def _shared_errors() -> tuple[type[Exception], ...]:
    """What talking to a shared project's server may raise (the driver is imported only then)."""
    return (ProjectError, *database_errors())


def create_project_for_folder(folder: Path) -> tuple[Project, ImageIndex]:
    """A project whose database lives in ``folder``, with every image under it added (not decoded),
    and its image list (read on the calling thread: a worker's)."""
    project = Project.create(folder, exist_ok=True)
    try:
        was_empty = project.image_count() == 0
        project.add_folder(folder)
        if was_empty:
            remember_id_order(project)
        return project, ImageIndex.load(project)
    except BaseException:
        project.close()
        raise


def load_image_index(project: Project) -> tuple[Project, ImageIndex]:
    """``project`` and its image list, read on the calling thread (a worker's)."""
    return project, ImageIndex.load(project)


def open_database_project(url: str, image_root: str) -> tuple[Project, ImageIndex]:
    """The project in the PostgreSQL database at ``url`` (images under ``image_root``) and its
    image list, connected and read on the calling thread (a worker's)."""
    project = Project.open(url, image_root=image_root)
    try:
        return load_image_index(project)
    except BaseException:
        project.close()
        raise


class MainWindow(QMainWindow):
    """Signals: ``projectOpened(project)`` once a project is shown (None when closed)."""

    projectOpened = Signal(object)

    def __init__(self, settings: AppSettings | None = None, *, interactive: bool = True) -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self.interactive = interactive
        self.project: Project | None = None
        self.setObjectName("labeler_main_window")
        self.setWindowTitle("labeler")
        self.setWindowIcon(app_icon())
        self.undo_stack = QUndoStack(self)
        self.canvas = AnnotationCanvas(self.undo_stack, self)
        self.setCentralWidget(self.canvas)
        self.canvas.setMinimumSize(*self.MIN_CANVAS)
        self.images = ImageListPanel()
        self.classes = ClassListPanel()
        self.proposals = ProposalsPanel(self.canvas)
        self.objects = ObjectsPanel(self.canvas)
        self.autolabel_panel = AutoLabelPanel()
        self.training_panel = TrainingPanel()
        self.models = ModelListPanel()
        self.plugin_combo = QComboBox()
        self._plugins_loaded = False  # filled just after the first paint (reading entry points takes ~0.15 s)
        self.plugin_combo.setToolTip("The model plugin to train and auto-label with")
        self.model_tabs = QTabWidget()
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.autolabeler = AutoLabelController(self)
        self.trainer = TrainingController(self)
        self.live = LiveUpdates(self)  # others' changes on a shared project (PostgreSQL)
        self.live.changed.connect(self._on_live_changes)
        self.live.failed.connect(self.status.showMessage)
        self._session = uuid.uuid4().hex  # this window's name in the project's presence records
        self._presence_timer = QTimer(self)  # renews "this window shows image N" before it expires
        self._presence_timer.setInterval(int(PRESENCE_TTL * 1000 / 3))
        self._presence_timer.timeout.connect(self._say_presence)
        self._open_worker: FunctionWorker | None = None
        self._open_token: object | None = None  # the latest open asked for: older results are dropped
        self.review = ReviewClock()  # review time of the image shown (labeler.core.review)
        self._done_since_training = 0  # images marked done since the last training run started
        self._batch_timer = QTimer(self)  # re-reads image states while auto-label-all writes
        self._batch_timer.setInterval(1500)
        self._batch_timer.timeout.connect(self._refresh_during_batch)
        self._shown_proposals: frozenset[int] = frozenset()
        self._build_docks()
        self._panels = PanelSqueeze(self, self.canvas)
        self._shown_once = False
        self.actions_: WindowActions = build_actions(self)
        self._connect()
        self._restore()
        self._update_enabled()
        self.status.showMessage(OPEN_HINT)
        self.canvas.set_empty_notice(OPEN_HINT)

    MIN_CANVAS = (200, 160)
    """The canvas keeps at least this size: the side panels shrink (and scroll) before it does."""

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._panels.schedule()  # the side panels give way before the canvas does

    # ---- layout ---------------------------------------------------------------------------

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        if widget is self.images:
            dock.setWidget(widget)  # the list scrolls itself
        else:  # the panel scrolls when the window is small, so that it, not the canvas, gives way
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(widget)
            scroll.setMinimumSize(120, 36)  # a 500 x 350 window still holds every panel (scrolling)
            dock.setWidget(scroll)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        self._dock("Images", "images_dock", self.images, left)
        self._dock("Classes", "classes_dock", self.classes, right)
        self._dock("Proposals", "proposals_dock", self.proposals, right)
        self._dock("Objects", "objects_dock", self.objects, right)
        model = QWidget()
        layout = QVBoxLayout(model)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(QLabel("Plugin"))
        row.addWidget(self.plugin_combo, 1)
        layout.addLayout(row)
        self.model_tabs.addTab(self.autolabel_panel, "Auto-label")
        self.model_tabs.addTab(self.training_panel, "Train")
        self.model_tabs.addTab(self.models, "Versions")
        layout.addWidget(self.model_tabs, 1)
        self._dock("Model", "model_dock", model, right)
        docks = {
            n: d
            for n in ("images_dock", "proposals_dock", "objects_dock", "model_dock")
            if (d := self.findChild(QDockWidget, n)) is not None
        }
        # the proposals and the objects of the image share one place (tabs), so that the model
        # panel and its training plot keep room at 900 px; either can be dragged out
        self.tabifyDockWidget(docks["proposals_dock"], docks["objects_dock"])
        docks["proposals_dock"].raise_()
        self.resizeDocks([docks["images_dock"]], [LIST_WIDTH], Qt.Orientation.Horizontal)
        self.resizeDocks([docks["model_dock"]], [PANEL_WIDTH], Qt.Orientation.Horizontal)

    def _connect(self) -> None:
        self.images.imageActivated.connect(self._on_image_activated)
        self.classes.categoryChosen.connect(self.canvas.set_category)
        self.classes.categoriesChanged.connect(self._on_categories_changed)
        # the undo history may hold labels of the deleted class, which can no longer be stored
        self.classes.categoryDeleted.connect(lambda _id: self.undo_stack.clear())
        self.canvas.annotationsChanged.connect(self._on_annotations_changed)
        self.canvas.selectionChanged.connect(lambda _ids: self.proposals.refresh())
        self.canvas.toolChanged.connect(self._on_tool_changed)
        self.canvas.errorOccurred.connect(lambda msg: self.status.showMessage(msg, 10_000))
        self.canvas.zoomChanged.connect(self.status.show_zoom)
        self.canvas.itemsChanged.connect(self.objects.refresh)
        self.canvas.classNeeded.connect(lambda: QTimer.singleShot(0, self._ask_first_class))
        self.images.searchFinished.connect(lambda: self.canvas.view().setFocus(Qt.FocusReason.ShortcutFocusReason))
        self.plugin_combo.currentTextChanged.connect(self._on_plugin_changed)
        self.autolabel_panel.image_button.clicked.connect(self.autolabel_image)
        self.autolabel_panel.all_button.clicked.connect(self.autolabel_all)
        self.autolabel_panel.cancel_button.clicked.connect(self.autolabeler.cancel_all)
        self.autolabeler.imageLabelled.connect(self._on_image_labelled)
        self.autolabeler.imageRunning.connect(self._on_image_running)
        self.autolabeler.imageFailed.connect(self._on_autolabel_failed)
        self.autolabeler.batchProgress.connect(self.autolabel_panel.show_progress)
        self.autolabeler.batchStarted.connect(self._batch_timer.start)
        self.autolabeler.batchFinished.connect(self._on_batch_finished)
        self.training_panel.train_button.clicked.connect(self.start_training)
        self.training_panel.cancel_button.clicked.connect(self.trainer.cancel)
        self.trainer.progress.connect(self.training_panel.show_event)
        self.trainer.finished.connect(self._on_training_finished)
        self.models.scoresChanged.connect(self.training_panel.plot.set_versions)
        self.models.versionActivated.connect(
            lambda v: self.status.showMessage(f"Model version #{v} is now active", 5000)
        )

    def _restore(self) -> None:
        geometry = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1400, 900)
        state = self.settings.window_state()
        self._layout_restored = state is not None and self.restoreState(state)
        if self._layout_restored:
            self._panels.forget()
        self.training_panel.auto_retrain.setChecked(bool(self.settings.value("training/auto_retrain", False)))
        every = self.settings.value("training/retrain_every", 10)
        self.training_panel.retrain_every.setValue(int(every) if isinstance(every, (int, float)) else 10)
        budget = self.settings.value("training/budget", 120.0)
        self.training_panel.budget.setValue(float(budget) if isinstance(budget, (int, float)) else 120.0)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            self._panels.widen_unreadable(self.findChild(QDockWidget, "images_dock"))  # a restored narrow list
            self._panels.widen_unreadable(
                self.findChild(QDockWidget, "model_dock"),  # and right-hand column
                below=READABLE_PANEL_WIDTH,
                width=PANEL_WIDTH,
            )
            if not self._layout_restored:
                self._split_right_column()
        if not self._plugins_loaded:
            QTimer.singleShot(0, self.load_plugins)

    def _split_right_column(self) -> None:
        """A new layout, once the window has its size: the classes panel and the proposals (tabbed
        with the objects) get the height their content asks for, the model panel the rest."""
        names = ("classes_dock", "proposals_dock", "model_dock")
        found = [self.findChild(QDockWidget, n) for n in names]
        docks = [d for d in found if d is not None and d.isVisible() and not d.isFloating()]
        if len(docks) != len(names):
            return
        title = self.fontMetrics().height() + 8
        tabs = title if self.tabifiedDockWidgets(docks[1]) else 0  # the proposals share a place with the objects
        heights = [
            title + max(self.classes.minimumSizeHint().height(), 110) + 8,
            title + tabs + max(self.proposals.minimumSizeHint().height(), self.objects.minimumSizeHint().height()) + 8,
        ]
        rest = sum(d.height() for d in docks) - sum(heights)
        self.resizeDocks(docks, [*heights, max(rest, 200)], Qt.Orientation.Vertical)

    def load_plugins(self) -> None:
        """List the installed model plugins (entry points; nothing is imported) and pick the last used."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        self.plugin_combo.blockSignals(True)
        descriptions = plugin_descriptions()
        for row, name in enumerate(installed_plugins()):
            self.plugin_combo.addItem(name)
            self.plugin_combo.setItemData(row, descriptions.get(name, ""), Qt.ItemDataRole.ToolTipRole)
        plugin = self._project_plugin() or self.settings.value("model/plugin", "")
        if isinstance(plugin, str) and plugin:
            self.plugin_combo.setCurrentText(plugin)
        self.plugin_combo.blockSignals(False)
        self._on_plugin_changed(self.plugin_combo.currentText())

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.stop_background_jobs("Quit", "quit"):
            event.ignore()
            return
        self.shutdown()
        self.set_project(None)  # every edit is already stored; this closes the database
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Save the layout, stop child processes, close the project."""
        self.settings.save_window(QByteArray(self.saveGeometry()), QByteArray(self.saveState()))
        self.settings.set_value("training/auto_retrain", self.training_panel.auto_retrain.isChecked())
        self.settings.set_value("training/retrain_every", self.training_panel.retrain_every.value())
        self.settings.set_value("training/budget", self.training_panel.budget.value())
        if self._plugins_loaded:
            self.settings.set_value("model/plugin", self.plugin_combo.currentText())
        self.settings.sync()
        self.stop_background_jobs(None, "")
        self._end_visit()
        if self.project is not None:
            self._leave_shared(self.project)
        self.images.model.stop_thumbnails()
        self.canvas.wait_for_loads(10_000)
        if self.autolabeler.worker is not None:
            self.autolabeler.worker.signals.blockSignals(True)

    def background_jobs_running(self) -> bool:
        """Whether a training run or an "auto-label all" child process is working on the project."""
        return self.trainer.is_running() or self.autolabeler.batch_running()

    def stop_background_jobs(self, title: str | None, action: str) -> bool:
        """Stop the training and "auto-label all" child processes of the open project, and wait
        for them (SIGTERM, then SIGKILL after 5 s: no orphans). When interactive and ``title`` is
        given, ask first ("Stop it and ``action``?"); ``False`` if the user said no (nothing stopped)."""
        if not self.background_jobs_running():
            return True
        if self.interactive and title is not None:
            answer = QMessageBox.question(
                self, title, f"Training or auto-labelling is running on this project. Stop it and {action}?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        for job in (self.trainer.job, self.autolabeler.job):
            if job is not None:
                job.stop(5000)
        return True

    # ---- opening --------------------------------------------------------------------------

    def open_path(self, path: str | Path, *, image_root: str | Path | None = None) -> bool:
        """Open a project, or a folder of images (asking, when interactive, to make it a project),
        or a project in PostgreSQL (a ``postgresql://`` URL; see :meth:`open_database`)."""
        if self.project is not None and not self.stop_background_jobs("Open", "open another project"):
            return False
        if is_database_url(str(path)):
            return self.open_database(str(path), image_root=image_root)
        path = Path(path).expanduser()
        if Project.is_project(path):
            return self.open_project(path)
        if path.is_dir():
            return self.open_folder(path)
        self._error("Open", f"{path} is neither a labeler project nor a folder of images")
        return False

    def open_project(self, path: str | Path) -> bool:
        """Open the project at ``path``; its image list is read on a worker thread (a million
        images take a second), then shown (``projectOpened``)."""
        try:
            project = Project.open(path)
        except (ProjectError, OSError) as exc:
            self._error("Open project", str(exc))
            return False
        self.status.showMessage(f"Reading the images of {project.root}…")
        self._start_open(FunctionWorker(load_image_index, project), project)
        return True

    def open_database(self, url: str, *, image_root: str | Path | None = None) -> bool:
        """Open the project in the PostgreSQL database at ``url``, its images under ``image_root``
        on this machine: given, else the folder used for it last time, else (interactive) asked
        for. The connection is made on a worker thread, so a server that does not answer never
        freezes the window."""
        root = image_root or self.settings.image_root(split_password(url)[0])
        if root is None and self.interactive:
            chosen = ask_shared_project(self, url)
            if chosen is None:
                return False
            url, root = chosen
        if root is None:
            self._error("Open project", f"{redact(url)}: a shared project needs this machine's image folder")
            return False
        self.status.showMessage(f"Connecting to {redact(url)}…")
        self._start_open(FunctionWorker(open_database_project, url, str(root)), None)
        return True

    def ask_open_shared_project(self) -> None:
        """File ▸ Open shared project: a database URL and this machine's image folder."""
        chosen = ask_shared_project(self, "")
        if chosen is not None:
            self.open_path(chosen[0], image_root=chosen[1])

    def _start_open(self, worker: FunctionWorker, project: Project | None) -> None:
        """Run ``worker`` (it returns ``(project, index)``); only the latest one asked for is shown."""
        token = object()
        self._open_token = token

        def done(result: tuple[Project, ImageIndex]) -> None:
            if self._open_token is token:
                self.set_project(result[0], index=result[1])
            else:
                result[0].close()

        def failed(message: str) -> None:
            if project is not None:
                project.close()
            if self._open_token is token:
                self._error("Open project", message)

        worker.signals.finished.connect(done)
        worker.signals.failed.connect(failed)
        self._open_worker = worker.start()

    def open_folder(self, folder: Path) -> bool:
        """Make ``folder`` a project (its database in that folder) on a worker thread, then open it."""
        if self.interactive:
            answer = QMessageBox.question(
                self,
                "Create a project?",
                f"{folder} is not a labeler project yet.\n\nCreate one there? The images stay where they "
                "are; the project database (labeler.db) and a models/ folder are added to this folder.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        self.status.showMessage(f"Adding the images of {folder}…")
        self._start_open(FunctionWorker(create_project_for_folder, folder), None)
        return True

    def set_project(self, project: Project | None, *, index: ImageIndex | None = None) -> None:
        """Show ``project`` (closing the one shown); the last image seen there becomes current.

        Child processes still working on the project shown are stopped first (callers that can
        ask the user do so before: :meth:`stop_background_jobs`)."""
        if project is not self.project:
            self.stop_background_jobs(None, "")
        self._end_visit()
        old = self.project
        if old is not None and old is not project and self.plugin_combo.currentText():
            self.settings.set_value(
                self.settings.project_key(location_name(old)) + "/plugin", self.plugin_combo.currentText()
            )
        self.undo_stack.clear()
        if old is not None and old is not project:
            self._leave_shared(old)
        self.project = project
        self.canvas.set_project(project)
        self.classes.set_project(project)
        self.images.set_project(project, index=index)
        self.proposals.set_project(project)
        if project is not old:
            self.training_panel.reset()
            self.autolabel_panel.reset()
            chosen = self._project_plugin()
            if chosen and self.plugin_combo.findText(chosen) >= 0 and chosen != self.plugin_combo.currentText():
                self.plugin_combo.blockSignals(True)
                self.plugin_combo.setCurrentText(chosen)
                self.plugin_combo.blockSignals(False)
        self.models.set_project(project, self.plugin_combo.currentText() or None)
        if old is not None and old is not project:
            old.close()
        if project is not None and project is not old and project.url is not None:
            self.live.start(project)
            self._presence_timer.start()
            self.images.model.set_presence(self._others_present(project))
        if project is not None:
            where = location_name(project)
            self.settings.add_recent_project(where)
            if project.url is not None:
                self.settings.set_image_root(where, project.root)
            self.status.clearMessage()
            title = project.root.name if project.url is None else where.rsplit("/", 1)[-1].split("?")[0]
            self.setWindowTitle(f"{title} — labeler")
            last = self.settings.last_image(where)
            if not (last is not None and self.images.select_image(last)):
                self.images.step(1)
            category_id = self.classes.current_category_id()
            if category_id is not None:
                self.canvas.set_category(category_id)
        else:
            self.setWindowTitle("labeler")
            self.status.showMessage(OPEN_HINT)
        self.status.refresh(project)
        self._update_enabled()
        self.projectOpened.emit(project)

    def ask_open_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a project or a folder of images")
        if folder:
            self.open_path(folder)

    def fill_recent_menu(self) -> None:
        menu = self.actions_.recent_menu
        menu.clear()
        recent = self.settings.recent_projects()
        for path in recent:
            menu.addAction(path, partial(self.open_path, path))
        if not recent:
            menu.addAction("(none)").setEnabled(False)

    # ---- images ---------------------------------------------------------------------------

    def current_image_id(self) -> int | None:
        return self.canvas.current_image_id()

    def _on_image_activated(self, image_id: int) -> None:
        self._end_visit()
        self.canvas.show_image(image_id)
        self._shown_proposals = frozenset()
        if self.project is not None:
            self.settings.set_last_image(location_name(self.project), image_id)
            self._shown_proposals = frozenset(
                a.id for a in self.project.annotations(image_id, states=[State.PROPOSED]) if a.id
            )
            self.review.show(image_id, now=time.monotonic())
        self.proposals.refresh()
        self._update_enabled()
        self._say_presence()

    # ---- a shared project: others' changes and who has which image open ----------------------

    def _say_presence(self) -> None:
        """Tell the others which image this window shows (a shared project only)."""
        project = self.project
        if project is None or project.url is None:
            return
        try:
            project.set_presence(self._session, self.current_image_id())
        except _shared_errors() as exc:
            self.status.showMessage(f"Could not tell the others which image is open here: {exc}")

    def _others_present(self, project: Project) -> dict[int, tuple[str, ...]]:
        try:
            return project.others_present(self._session)
        except _shared_errors():
            return {}

    def _leave_shared(self, project: Project) -> None:
        """Stop listening to ``project`` and take this window's presence record away."""
        self.live.stop()
        self._presence_timer.stop()
        self.images.model.set_presence({})
        if project.url is not None:
            try:
                project.clear_presence(self._session)
            except _shared_errors():
                pass  # it expires by itself

    def _on_live_changes(self, changes: list[Change]) -> None:
        """Someone else changed images of the shared project: re-read just those (the image on
        screen included, keeping what did not change) and who has which image open."""
        project = self.project
        if project is None:
            return
        mine = project.connection_id
        theirs = [c for c in changes if c.writer != mine]
        touched = {c.image_id for c in theirs if c.table != "presence" and c.image_id is not None}
        for image_id in touched:
            self.images.model.refresh_image(image_id)
        current = self.current_image_id()
        if current in touched:
            self.canvas.reload_annotations()
            self.proposals.refresh()
            authors = sorted({c.author for c in theirs if c.image_id == current})
            self.status.showMessage(f"{', '.join(authors)} changed this image", 8000)
        if any(c.table == "presence" for c in theirs):
            self.images.model.set_presence(self._others_present(project))

    def _end_visit(self) -> None:
        """Log the review time of the image being left (:mod:`labeler.core.review`)."""
        review = self.review.leave()
        if self.project is None:
            return
        try:
            log_review(self.project, review)
        except Exception:  # noqa: BLE001 - a closed project must not stop navigation
            pass

    def step_image(self, delta: int) -> None:
        if not self.images.step(delta):
            self.status.showMessage("No more images in this direction", 3000)

    def next_not_done(self) -> None:
        image_id = self.images.model.next_not_done(self.images.current_image_id())
        if image_id is None:
            self.status.showMessage("Every image is done", 5000)
        else:
            self.images.select_image(image_id)

    def next_most_uncertain(self) -> None:
        if self.project is None:
            return
        current_id = self.images.current_image_id()
        current = self.project.image(current_id) if current_id is not None else None
        record = next_most_uncertain_image(self.project, current=current)
        if record is None:
            self.status.showMessage("No auto-labelled image left that is not done", 5000)
        else:
            self.images.select_image(record.id)
            left = self.project.uncertain_image_count()
            self.status.showMessage(
                f"Next most uncertain: {describe_uncertainty(record.uncertainty)}"
                f" ({left} auto-labelled image{'' if left == 1 else 's'} not done)",
                5000,
            )

    def _ask_first_class(self) -> None:
        """A label was started with no class: ask for one (after the mouse press that asked is over)."""
        if self.project is None or self.project.categories():
            return
        self.classes.ask_add()
        if self.project.categories():
            self.status.showMessage(f"Class {self.project.categories()[0].name!r} added: draw the label now", 5000)

    def toggle_done(self) -> None:
        image_id = self.current_image_id()
        if self.project is None or image_id is None:
            return
        record = self.project.image(image_id)
        done = not record.done
        if done:
            why_not = done_refusal(self.project.root / record.path, load_error=self.canvas.load_error())
            if why_not is not None:
                self.status.showMessage(why_not, 10_000)
                self._update_enabled()  # the checkable action goes back to "not done"
                return
        try:
            self.project.set_done(image_id, done)
        except ProjectError as exc:  # e.g. a reviewer's: the database refused, nothing changed
            self._error("Mark done", str(exc))
            self._update_enabled()
            return
        self.images.model.refresh_image(image_id)
        self.status.refresh(self.project)
        self._update_enabled()
        self.status.showMessage("Marked done" if done else "Marked not done", 3000)
        if done:
            self._done_since_training += 1
            self._maybe_retrain()

    # ---- editing --------------------------------------------------------------------------

    def set_tool(self, tool: str) -> None:
        self.canvas.set_tool(tool)

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        self.canvas.set_layer_visible(layer, visible)

    def change_class_selected(self) -> None:
        category_id = self.classes.current_category_id()
        if category_id is not None:
            self.canvas.change_class_selected(category_id)

    def _on_tool_changed(self, tool: str) -> None:
        action = self.actions_.tools.get(tool)
        if action is not None and not action.isChecked():
            action.setChecked(True)
        if self.canvas.tool_hint():
            self.status.showMessage(self.canvas.tool_hint(), 15_000)

    def _on_annotations_changed(self, image_id: int) -> None:
        proposals: list[Annotation] | None = None
        if self.project is not None and image_id == self.current_image_id():
            if self.canvas.image_resolution() is not None:  # the canvas has just re-read them
                proposals = [i.ann for i in self.canvas.annotation_items().values() if i.ann.is_proposal]
            else:
                proposals = self.project.annotations(image_id, states=[State.PROPOSED])
            pending = frozenset(a.id for a in proposals if a.id)
            if self._shown_proposals - pending:  # proposals were accepted or rejected
                self.review.reviewed(image_id, now=time.monotonic())
            self._shown_proposals = pending
        self.images.model.refresh_image(image_id)
        self.proposals.refresh(proposals=proposals)
        self.status.refresh(self.project)

    def _on_categories_changed(self) -> None:
        self.canvas.set_project(self.project)  # the same project: re-reads names and colours, keeps the view
        category_id = self.classes.current_category_id()
        if category_id is not None:
            self.canvas.set_category(category_id)

    # ---- model ----------------------------------------------------------------------------

    def plugin(self) -> str | None:
        return self.plugin_combo.currentText() or None

    def _project_plugin(self) -> str | None:
        """The plugin this project was last used with: as remembered, else that of its newest model version."""
        if self.project is None:
            return None
        remembered = self.settings.value(self.settings.project_key(location_name(self.project)) + "/plugin", "")
        if isinstance(remembered, str) and remembered:
            return remembered
        versions = self.project.model_versions()
        return versions[-1].plugin if versions else None

    def _on_plugin_changed(self, plugin: str) -> None:
        self.models.set_project(self.project, plugin or None)
        if self.project is not None and plugin:
            self.settings.set_value(self.settings.project_key(location_name(self.project)) + "/plugin", plugin)
        index = self.plugin_combo.currentIndex()
        tip = self.plugin_combo.itemData(index, Qt.ItemDataRole.ToolTipRole) if index >= 0 else None
        self.plugin_combo.setToolTip(
            f"The model plugin to train and auto-label with: {tip}"
            if tip
            else "The model plugin to train and auto-label with"
        )
        self._update_enabled()

    def _needs_model(self) -> str | None:
        plugin = self.plugin()
        if self.project is None or plugin is None:
            return None
        if self.project.active_model_version(plugin) is None:
            self._error(
                "Auto-label", f"There is no trained {plugin} model yet. Mark a few images done and train first."
            )
            return None
        return plugin

    def autolabel_image(self) -> None:
        image_id = self.current_image_id()
        plugin = self._needs_model()
        if plugin is None or image_id is None or self.project is None:
            return
        self.status.showMessage(f"Auto-labelling with {plugin}…")
        self.autolabeler.label_image(self.project, plugin, image_id)

    def autolabel_all(self) -> None:
        plugin = self._needs_model()
        if plugin is None or self.project is None or self.autolabeler.batch_running():
            return
        self.model_tabs.setCurrentWidget(self.autolabel_panel)  # its progress and Cancel, wherever the user was
        self.autolabel_panel.set_running(True)
        self.autolabeler.label_all(child_project(self.project), plugin)

    def _on_image_running(self, running: bool) -> None:
        self.autolabel_panel.set_image_running(running)
        if not running:
            self._update_enabled()

    def _on_image_labelled(self, image_id: int) -> None:
        self.images.model.refresh_image(image_id)
        if image_id == self.current_image_id():
            self._reload_current_if_changed(force=not self.autolabeler.batch_running())
        if not self.autolabeler.batch_running():
            self.status.showMessage("Proposals ready", 3000)
            self.status.refresh(self.project)

    def _reload_current_if_changed(self, *, force: bool = False) -> None:
        """Re-read the current image's annotations if its proposals changed in the store."""
        image_id = self.current_image_id()
        if self.project is None or image_id is None:
            return
        proposals = frozenset(a.id for a in self.project.annotations(image_id, states=[State.PROPOSED]) if a.id)
        if force or proposals != self._shown_proposals:
            self.canvas.reload_annotations()
            self.proposals.refresh()
            if proposals:  # review starts when they appear
                self.review.proposals_appeared(image_id, now=time.monotonic())
        self._shown_proposals = proposals

    def _refresh_during_batch(self) -> None:
        """While auto-label-all runs: results appear as the child writes them (it writes in batches)."""
        self.images.model.refresh_states()
        self._reload_current_if_changed()
        self.status.refresh(self.project)

    def _on_autolabel_failed(self, message: str) -> None:
        self.status.showMessage(f"Auto-labelling failed: {message}", 15_000)
        self._error("Auto-label", message)

    def _on_batch_finished(self, ok: bool, message: str, tail: str) -> None:
        self._batch_timer.stop()
        self._refresh_during_batch()
        self.autolabel_panel.show_finished(message, tail, ok)
        self.status.showMessage(message, 10_000)
        self._update_enabled()

    def start_training(self) -> None:
        plugin = self.plugin()
        if self.project is None or plugin is None or self.trainer.is_running():
            return
        self._done_since_training = 0
        self.model_tabs.setCurrentWidget(self.training_panel)
        self.training_panel.set_running(True, plugin)
        self.trainer.start(child_project(self.project), plugin, time_budget=self.training_panel.budget.value())
        self.status.showMessage(f"Training {plugin} in the background…", 5000)

    def retrain_policy(self) -> RetrainPolicy:
        """The auto-retrain setting of the Train tab."""
        panel = self.training_panel
        return RetrainPolicy(every=panel.retrain_every.value(), enabled=panel.auto_retrain.isChecked())

    def _maybe_retrain(self) -> None:
        if self.retrain_policy().due(
            done_since_training=self._done_since_training, training_running=self.trainer.is_running()
        ):
            self.start_training()

    def _on_training_finished(self, ok: bool, message: str, tail: str) -> None:
        self.training_panel.show_finished(ok, message, tail)
        self.models.reload()
        plugin = self.plugin()
        if ok and self.project is not None and plugin:
            active = self.project.active_model_version(plugin)
            if active is not None:
                message += f" Active version: #{active.id}."
        self.status.showMessage(message, 10_000)
        self._update_enabled()

    # ---- import / export ------------------------------------------------------------------

    def ask_export(self) -> None:
        if self.project is None:
            return
        from labeler.gui.dialogs.transfer_dialogs import ExportDialog

        ExportDialog(self.project, self).exec()

    def ask_import(self) -> None:
        if self.project is None:
            return
        self.import_dialog().exec()

    def import_dialog(self) -> ImportDialog:
        """The import dialog for the open project; the window re-reads the project as soon as an
        import is done (the import commits through its own connection), and again if the user
        takes the import back from the dialog."""
        from labeler.gui.dialogs.transfer_dialogs import ImportDialog

        assert self.project is not None
        dialog = ImportDialog(self.project, self)
        dialog.succeeded.connect(lambda _report: self.set_project_views())
        dialog.undone.connect(self._on_import_undone)
        return dialog

    def _on_import_undone(self, text: str) -> None:
        self.set_project_views()
        self.status.showMessage(text, 10_000)

    def add_image_files(self, paths: list[str]) -> int:
        """Add image files or folders to the project (incremental: old images and labels stay);
        returns how many are new."""
        if self.project is None or not paths:
            return 0
        from labeler.core.images import is_image_file
        from labeler.core.store import list_image_files

        files: list[Path] = []
        for path in map(Path, paths):
            files += list_image_files(path) if path.is_dir() else [path] if is_image_file(path) else []
        before = self.project.image_count()
        try:
            self.project.add_images(files)
        except (ProjectError, OSError) as exc:
            self.status.showMessage(f"Images not added: {exc}", 10_000)
            return 0
        added = self.project.image_count() - before
        self.set_project_views()
        self.status.showMessage(
            f"{added} new image{'' if added == 1 else 's'} added ({len(files) - added} already in the project)", 8000
        )
        return added

    def ask_add_images(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        if self.project is None:
            return
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add images", str(self.project.root), "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp *.gif)"
        )
        self.add_image_files(paths)

    def rescan_folder(self) -> int:
        """Add the image files that appeared in the project folder since it was last read."""
        return self.add_image_files([str(self.project.root)]) if self.project is not None else 0

    def set_project_views(self) -> None:
        """Re-read everything shown from the project (after an import)."""
        current = self.current_image_id()
        self.classes.reload()
        self.images.set_project(self.project)
        self.canvas.set_project(self.project)
        if current is None or not self.images.select_image(current):
            self.images.step(1)
        self.status.refresh(self.project)

    # ---- helpers --------------------------------------------------------------------------

    def _update_enabled(self) -> None:
        has_project = self.project is not None
        image_id = self.current_image_id()
        has_image = has_project and image_id is not None
        a = self.actions_
        A = ActionId
        for name in (
            A.IMPORT,
            A.EXPORT,
            A.ADD_IMAGES,
            A.RESCAN,
            A.NEXT,
            A.PREVIOUS,
            A.NEXT_UNDONE,
            A.NEXT_UNCERTAIN,
            A.ADD_CLASS,
        ):
            a[name].setEnabled(has_project)
        a[A.MARK_DONE].setEnabled(has_image)
        if image_id is not None and self.project is not None:
            a[A.MARK_DONE].setChecked(self.project.image(image_id).done)
        plugin_ok = has_project and self.plugin() is not None
        a[A.AUTOLABEL_IMAGE].setEnabled(plugin_ok and has_image)
        a[A.AUTOLABEL_ALL].setEnabled(plugin_ok)
        a[A.TRAIN].setEnabled(plugin_ok and not self.trainer.is_running())
        self.autolabel_panel.image_button.setEnabled(plugin_ok and has_image and not self.autolabeler.image_running())
        self.autolabel_panel.all_button.setEnabled(plugin_ok and not self.autolabeler.batch_running())
        self.training_panel.train_button.setEnabled(plugin_ok and not self.trainer.is_running())

    def _error(self, title: str, message: str) -> None:
        self.status.showMessage(message, 15_000)
        if self.interactive:
            QMessageBox.warning(self, title, message)
