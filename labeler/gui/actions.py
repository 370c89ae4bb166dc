"""Menus, tool bar and keyboard shortcuts of the main window.

Every command the user can give is a ``QAction`` here, so a menu entry, a tool-bar button and a
shortcut are one and the same. The actions call methods of :class:`~labeler.gui.main_window.MainWindow`
or its canvas; nothing here touches the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QSlider, QSpinBox, QToolBar

from labeler.gui.canvas import LAYERS

if TYPE_CHECKING:
    from labeler.gui.main_window import MainWindow

TOOLS: tuple[tuple[str, str, str], ...] = (
    ("select", "Select", "V"),
    ("box", "Box", "B"),
    ("polygon", "Polygon", "P"),
    ("brush", "Brush", "R"),
    ("eraser", "Eraser", "E"),
    ("assist", "Box to mask", "G"),
    ("outline", "Snapping outline", "O"),
)


@dataclass
class Actions:
    """The window's actions by name (``tools`` and ``layers`` keyed by their canvas name)."""

    named: dict[str, QAction] = field(default_factory=dict)
    tools: dict[str, QAction] = field(default_factory=dict)
    layers: dict[str, QAction] = field(default_factory=dict)
    classes: list[QAction] = field(default_factory=list)
    brush_size: QSpinBox | None = None
    mask_opacity: QSlider | None = None
    tool_bar: QToolBar | None = None

    def __getitem__(self, name: str) -> QAction:
        return self.named[name]


def _action(window: MainWindow, actions: Actions, name: str, text: str, slot: object,
            shortcut: str | QKeySequence | QKeySequence.StandardKey | list[QKeySequence] | None = None, tip: str | None = None) -> QAction:
    action = QAction(text, window)
    if isinstance(shortcut, list):
        action.setShortcuts(shortcut)
    elif shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(f"{tip} ({action.shortcut().toString()})" if action.shortcut().toString() else tip)
    if slot is not None:
        action.triggered.connect(slot)
    window.addAction(action)  # shortcuts work whatever has focus in the window
    actions.named[name] = action
    return action


def build_actions(window: MainWindow) -> Actions:
    """Create every action, the menus and the tool bar of ``window``."""
    a = Actions()
    canvas = window.canvas
    std = QKeySequence.StandardKey

    # File
    _action(window, a, "open_project", "&Open project or folder…", window.ask_open_project, std.Open,
            "Open a project, or a folder of images to make a project of")
    _action(window, a, "import", "&Import labels…", window.ask_import, "Ctrl+I", "Import annotations from a file")
    _action(window, a, "export", "&Export labels…", window.ask_export, "Ctrl+E", "Export annotations to a file")
    _action(window, a, "add_images", "&Add images…", window.ask_add_images, None, "Add image files to the project")
    _action(window, a, "rescan", "Re&scan folder", window.rescan_folder, "F5",
            "Add the images that appeared in the project folder (labels are kept)")
    _action(window, a, "quit", "&Quit", window.close, std.Quit)

    # Edit: undo / redo come from the shared undo stack, so they undo canvas edits too
    undo = window.undo_stack.createUndoAction(window, "&Undo")
    undo.setShortcuts([QKeySequence("Ctrl+Z")])
    redo = window.undo_stack.createRedoAction(window, "&Redo")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    for name, act in (("undo", undo), ("redo", redo)):
        window.addAction(act)
        a.named[name] = act
    _action(window, a, "duplicate", "D&uplicate selected", lambda: canvas.duplicate_selected(), "Ctrl+D")
    _action(window, a, "delete", "&Delete selected", lambda: canvas.delete_selected(), None,
            "Delete the selected labels (Delete on the canvas)")
    _action(window, a, "change_class", "Change &class of selected to current", window.change_class_selected,
            "Ctrl+K", "Give the selected labels the class chosen in the class list")
    _action(window, a, "add_class", "&Add class…", lambda: window.classes.ask_add(), "Ctrl+Shift+N")

    # View
    _action(window, a, "fit", "&Fit to window", lambda: canvas.fit_to_window(), "Ctrl+0")
    _action(window, a, "actual", "Actual size (&1:1)", lambda: canvas.zoom_actual_size(), "Ctrl+1")
    for layer in LAYERS:
        act = _action(window, a, f"layer_{layer}", f"Show {layer}", None)
        act.setCheckable(True)
        act.setChecked(True)
        act.toggled.connect(partial(window.set_layer_visible, layer))
        a.layers[layer] = act

    # Image
    _action(window, a, "previous", "&Previous image", lambda: window.step_image(-1), "A")
    _action(window, a, "next", "&Next image", lambda: window.step_image(1), "D")
    _action(window, a, "next_undone", "Next &not done", window.next_not_done, "N")
    _action(window, a, "next_uncertain", "Next most &uncertain", window.next_most_uncertain, "U")
    _action(window, a, "mark_done", "&Mark done", window.toggle_done,
            [QKeySequence("M"), QKeySequence("Ctrl+Return")], "Mark the image done: every object on it is labelled")
    a["mark_done"].setCheckable(True)

    # Tools
    group = QActionGroup(window)
    for tool, text, key in TOOLS:
        act = _action(window, a, f"tool_{tool}", text, partial(window.set_tool, tool), key, f"{text} tool")
        act.setCheckable(True)
        group.addAction(act)
        a.tools[tool] = act
    a.tools["select"].setChecked(True)
    for n in range(1, 10):
        act = _action(window, a, f"class_{n}", f"Class {n}", partial(window.classes.choose_number, n), str(n))
        a.classes.append(act)

    # Model
    _action(window, a, "autolabel_image", "Auto-label this &image", window.autolabel_image, "Ctrl+L")
    _action(window, a, "autolabel_all", "Auto-label &all not done", window.autolabel_all, "Ctrl+Shift+L")
    _action(window, a, "train", "&Train", window.start_training, "Ctrl+T")
    _action(window, a, "accept_selected", "Accept selected proposals", lambda: window.proposals.accept_selected(), "Y")
    _action(window, a, "reject_selected", "Reject selected proposals", lambda: window.proposals.reject_selected(), "X")
    _action(window, a, "accept_all", "Accept all shown proposals", lambda: window.proposals.accept_all(), "Shift+Y")
    _action(window, a, "reject_all", "Reject all shown proposals", lambda: window.proposals.reject_all(), "Shift+X")

    _build_menus(window, a)
    _build_tool_bar(window, a)
    return a


def _build_menus(window: MainWindow, a: Actions) -> None:
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addAction(a["open_project"])
    window.recent_menu = file_menu.addMenu("Open &recent")
    window.recent_menu.aboutToShow.connect(window.fill_recent_menu)
    file_menu.addSeparator()
    file_menu.addActions([a["add_images"], a["rescan"]])
    file_menu.addSeparator()
    file_menu.addActions([a["import"], a["export"]])
    file_menu.addSeparator()
    file_menu.addAction(a["quit"])

    edit = bar.addMenu("&Edit")
    edit.addActions([a["undo"], a["redo"]])
    edit.addSeparator()
    edit.addActions([a["delete"], a["duplicate"], a["change_class"], a["add_class"]])

    view = bar.addMenu("&View")
    view.addActions([a["fit"], a["actual"]])
    view.addSeparator()
    view.addActions(list(a.layers.values()))
    view.addSeparator()
    window.docks_menu = view.addMenu("&Panels")

    image = bar.addMenu("&Image")
    image.addActions([a["previous"], a["next"], a["next_undone"], a["next_uncertain"]])
    image.addSeparator()
    image.addAction(a["mark_done"])

    tools = bar.addMenu("&Tools")
    tools.addActions(list(a.tools.values()))
    tools.addSeparator()
    classes = tools.addMenu("Pick &class")
    classes.addActions(a.classes)

    model = bar.addMenu("&Model")
    model.addActions([a["autolabel_image"], a["autolabel_all"], a["train"]])
    model.addSeparator()
    model.addActions([a["accept_selected"], a["reject_selected"], a["accept_all"], a["reject_all"]])

    help_menu = bar.addMenu("&Help")
    shortcuts = QAction("&Keyboard shortcuts", window)
    shortcuts.setShortcut(QKeySequence("F1"))
    shortcuts.triggered.connect(lambda: show_shortcuts(window, a))
    window.addAction(shortcuts)
    help_menu.addAction(shortcuts)
    a.named["shortcuts"] = shortcuts


CANVAS_KEYS = (
    ("Delete", "delete the selected labels (canvas)"),
    ("Escape", "cancel the label being drawn (canvas)"),
    ("Enter", "close the polygon being drawn; keep the box-to-mask mask (canvas)"),
    ("G, drag a box", "box to mask: GrabCut in the box, then left click = object, right click = not object, "
     "Backspace takes back a click, Enter keeps, Escape drops (canvas)"),
    ("G, click a mask proposal", "accept the region of the proposal under the click alone (canvas)"),
    ("Space + drag, middle button", "pan (canvas)"),
    ("Wheel", "zoom around the cursor (canvas)"),
    ("F", "fit the image to the window (canvas)"),
    ("[ / ]", "smaller / larger brush and eraser (canvas)"),
)


def shortcuts_text(a: Actions) -> str:
    """Every shortcut of the window's actions, plus the keys the canvas handles itself, as HTML."""
    rows = []
    for name, action in a.named.items():
        keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
        if name == "class_1":
            rows.append(("1 … 9", "pick the class at that place in the class list"))
        elif keys and not name.startswith("class_"):
            rows.append((keys, action.text().replace("&", "")))
    rows += list(CANVAS_KEYS)
    cells = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{t}</td></tr>" for k, t in rows)
    return f"<table>{cells}</table>"


def show_shortcuts(window: MainWindow, a: Actions) -> None:
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", shortcuts_text(a), parent=window)
    box.setTextFormat(Qt.TextFormat.RichText)
    box.open()


def _opacity_slider(window: MainWindow) -> QSlider:
    """The masks' opacity, 0-100 %."""
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(100)
    slider.setFixedWidth(90)
    slider.setToolTip("Opacity of the masks")
    slider.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    slider.valueChanged.connect(lambda v: window.canvas.set_mask_opacity(v / 100))
    return slider


def _build_tool_bar(window: MainWindow, a: Actions) -> None:
    bar = QToolBar("Tools", window)
    bar.setObjectName("tools_toolbar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    bar.addActions(list(a.tools.values()))
    bar.addWidget(QLabel(" size "))
    spin = QSpinBox()
    spin.setRange(1, 500)
    spin.setValue(20)
    spin.setSuffix(" px")
    spin.setToolTip("Brush and eraser size in image pixels")
    spin.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    spin.valueChanged.connect(lambda v: window.canvas.set_brush_size(int(v)))
    window.canvas.brushSizeChanged.connect(spin.setValue)  # [ and ] on the canvas show here too
    bar.addWidget(spin)
    a.brush_size = spin
    bar.addSeparator()
    bar.addActions([a["fit"], a["actual"]])
    bar.addSeparator()
    bar.addActions(list(a.layers.values()))
    a.mask_opacity = _opacity_slider(window)
    bar.addWidget(QLabel(" opacity "))
    bar.addWidget(a.mask_opacity)
    bar.addSeparator()
    bar.addActions([a["previous"], a["next"], a["next_undone"], a["mark_done"]])
    bar.addSeparator()
    bar.addActions([a["autolabel_image"], a["train"]])
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
    a.tool_bar = bar
    # short labels on the bar; the menus keep the long ones
    for name, short in (("fit", "Fit"), ("actual", "1:1"), ("previous", "◀ Prev"), ("next", "Next ▶"),
                        ("next_undone", "Next not done"), ("mark_done", "Done ✓"), ("autolabel_image", "Auto-label"),
                        ("train", "Train")):
        a[name].setIconText(short)
    for layer in LAYERS:
        a.layers[layer].setIconText(layer.capitalize())
