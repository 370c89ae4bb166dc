"""Menus, tool bar and keyboard shortcuts of the main window.

Every command the user can give is a ``QAction`` here, so a menu entry, a tool-bar button and a
shortcut are one and the same. Their texts, keys, tips and icons come from the command table
(``resources/shortcuts.toml``, read by :func:`labeler.core.resources.command_table`); this module
adds what each one does (a method of :class:`~labeler.gui.main_window.MainWindow` or its canvas),
where it goes, and returns all of it as one :class:`WindowActions`. Nothing here touches the project.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMenu,
    QMessageBox,
    QSlider,
    QSpinBox,
    QToolBar,
    QToolButton,
)

from labeler.core.resources import CommandSpec, CommandTable, ResourceError, command_table
from labeler.gui.canvas import LAYERS
from labeler.gui.icons import icon

if TYPE_CHECKING:
    from labeler.gui.main_window import MainWindow


class ActionId(StrEnum):
    """The name of every action of the window (the ``id`` of its row in ``shortcuts.toml``)."""

    OPEN_PROJECT = "open_project"
    OPEN_SHARED = "open_shared"
    ADD_IMAGES = "add_images"
    RESCAN = "rescan"
    IMPORT = "import"
    EXPORT = "export"
    QUIT = "quit"
    UNDO = "undo"
    REDO = "redo"
    DELETE = "delete"
    DUPLICATE = "duplicate"
    CHANGE_CLASS = "change_class"
    ADD_CLASS = "add_class"
    FIT = "fit"
    ACTUAL = "actual"
    LAYER_MASKS = "layer_masks"
    LAYER_BOXES = "layer_boxes"
    LAYER_POLYGONS = "layer_polygons"
    LAYER_PROPOSALS = "layer_proposals"
    PREVIOUS = "previous"
    NEXT = "next"
    NEXT_UNDONE = "next_undone"
    NEXT_UNCERTAIN = "next_uncertain"
    MARK_DONE = "mark_done"
    TOOL_SELECT = "tool_select"
    TOOL_BOX = "tool_box"
    TOOL_POLYGON = "tool_polygon"
    TOOL_BRUSH = "tool_brush"
    TOOL_ERASER = "tool_eraser"
    TOOL_ASSIST = "tool_assist"
    TOOL_OUTLINE = "tool_outline"
    PICK_CLASS = "pick_class"
    AUTOLABEL_IMAGE = "autolabel_image"
    AUTOLABEL_ALL = "autolabel_all"
    TRAIN = "train"
    ACCEPT_SELECTED = "accept_selected"
    REJECT_SELECTED = "reject_selected"
    ACCEPT_ALL = "accept_all"
    REJECT_ALL = "reject_all"
    SHORTCUTS = "shortcuts"


#: The canvas's tools, in tool-bar order, by the name :meth:`AnnotationCanvas.set_tool` takes.
TOOLS: tuple[str, ...] = ("select", "box", "polygon", "brush", "eraser", "assist", "outline")
#: Tool-bar buttons that show their short text beside the icon (an icon alone would not say it).
TEXT_BESIDE_ICON = frozenset({ActionId.NEXT_UNDONE, ActionId.MARK_DONE, ActionId.AUTOLABEL_IMAGE, ActionId.TRAIN})


@dataclass(frozen=True, kw_only=True)
class WindowActions:
    """What :func:`build_actions` made: every action by id, the tool and layer actions by their
    canvas names, the class picks (``1``-``9``), and the widgets of the tool bar and menus the
    window uses later."""

    by_id: Mapping[ActionId, QAction]
    tools: Mapping[str, QAction]
    layers: Mapping[str, QAction]
    classes: tuple[QAction, ...]
    brush_size: QSpinBox
    mask_opacity: QSlider
    tool_bar: QToolBar
    layers_button: QToolButton
    recent_menu: QMenu
    docks_menu: QMenu
    table: CommandTable

    def __getitem__(self, action_id: ActionId | str) -> QAction:
        return self.by_id[ActionId(action_id)]


def _tool_tip(spec: CommandSpec, action: QAction) -> str:
    key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    head = f"{spec.plain_text} ({key})" if key else spec.plain_text
    return f"{head}\n{spec.tip}" if spec.tip and spec.tip != spec.plain_text else head


def _configure(action: QAction, spec: CommandSpec) -> QAction:
    """Give ``action`` the table's keys, tips, icon and short text."""
    action.setShortcuts([QKeySequence(k) for k in spec.keys])
    action.setStatusTip(spec.tip or spec.plain_text)
    action.setToolTip(_tool_tip(spec, action))
    if spec.icon:
        action.setIcon(icon(spec.icon))
    if spec.short:
        action.setIconText(spec.short)
    return action


class _Builder:
    def __init__(self, window: MainWindow, table: CommandTable) -> None:
        self.window = window
        self.table = table
        self.by_id: dict[ActionId, QAction] = {}

    def add(
        self,
        action_id: ActionId,
        slot: Callable[[], object] | None,
        *,
        action: QAction | None = None,
        checkable: bool = False,
    ) -> QAction:
        spec = self.table[action_id]
        action = _configure(action if action is not None else QAction(spec.text, self.window), spec)
        action.setCheckable(checkable)
        if slot is not None:
            action.triggered.connect(slot)
        self.window.addAction(action)  # shortcuts work whatever has focus in the window
        self.by_id[action_id] = action
        return action


def build_actions(window: MainWindow) -> WindowActions:
    """Create every action, the menus and the tool bar of ``window`` (its docks already made)."""
    table = command_table()
    missing = {a.value for a in ActionId} - {c.id for c in table.commands}
    unknown = {c.id for c in table.commands} - {a.value for a in ActionId}
    if missing or unknown:
        raise ResourceError(
            f"shortcuts.toml does not match the window: missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    b = _Builder(window, table)
    canvas = window.canvas
    A = ActionId

    b.add(A.OPEN_PROJECT, window.ask_open_project)
    b.add(A.OPEN_SHARED, window.ask_open_shared_project)
    b.add(A.IMPORT, window.ask_import)
    b.add(A.EXPORT, window.ask_export)
    b.add(A.ADD_IMAGES, window.ask_add_images)
    b.add(A.RESCAN, window.rescan_folder)
    b.add(A.QUIT, window.close)

    # Edit: undo / redo come from the shared undo stack, so they undo canvas edits too
    b.add(A.UNDO, None, action=window.undo_stack.createUndoAction(window, table[A.UNDO].text))
    b.add(A.REDO, None, action=window.undo_stack.createRedoAction(window, table[A.REDO].text))
    b.add(A.DUPLICATE, canvas.duplicate_selected)
    b.add(A.DELETE, canvas.delete_selected)
    b.add(A.CHANGE_CLASS, window.change_class_selected)
    b.add(A.ADD_CLASS, window.classes.ask_add)

    # View
    b.add(A.FIT, canvas.fit_to_window)
    b.add(A.ACTUAL, canvas.zoom_actual_size)
    layers: dict[str, QAction] = {}
    for layer in LAYERS:
        act = b.add(ActionId(f"layer_{layer}"), None, checkable=True)
        act.setChecked(True)
        act.toggled.connect(partial(window.set_layer_visible, layer))
        layers[layer] = act

    # Image
    b.add(A.PREVIOUS, lambda: window.step_image(-1))
    b.add(A.NEXT, lambda: window.step_image(1))
    b.add(A.NEXT_UNDONE, window.next_not_done)
    b.add(A.NEXT_UNCERTAIN, window.next_most_uncertain)
    b.add(A.MARK_DONE, window.toggle_done, checkable=True)

    # Tools
    group = QActionGroup(window)
    tools: dict[str, QAction] = {}
    for tool in TOOLS:
        act = b.add(ActionId(f"tool_{tool}"), partial(window.set_tool, tool), checkable=True)
        group.addAction(act)
        tools[tool] = act
    tools["select"].setChecked(True)
    pick = table[A.PICK_CLASS]
    classes = []
    for n, key in enumerate(pick.keys, start=1):
        act = QAction(pick.text.format(n=n), window)
        act.setShortcut(QKeySequence(key))
        act.setStatusTip(pick.tip)
        act.triggered.connect(partial(window.classes.choose_number, n))
        window.addAction(act)
        classes.append(act)

    # Model
    b.add(A.AUTOLABEL_IMAGE, window.autolabel_image)
    b.add(A.AUTOLABEL_ALL, window.autolabel_all)
    b.add(A.TRAIN, window.start_training)
    b.add(A.ACCEPT_SELECTED, window.proposals.accept_selected)
    b.add(A.REJECT_SELECTED, window.proposals.reject_selected)
    b.add(A.ACCEPT_ALL, window.proposals.accept_all)
    b.add(A.REJECT_ALL, window.proposals.reject_all)
    shortcuts = b.add(A.SHORTCUTS, None)
    b.by_id[A.PICK_CLASS] = classes[0]

    recent_menu, docks_menu = _build_menus(window, b.by_id, tools, layers, classes)
    bar, spin, slider, layers_button = _build_tool_bar(window, b.by_id, tools, layers)
    actions = WindowActions(
        by_id=dict(b.by_id),
        tools=tools,
        layers=layers,
        classes=tuple(classes),
        brush_size=spin,
        mask_opacity=slider,
        tool_bar=bar,
        layers_button=layers_button,
        recent_menu=recent_menu,
        docks_menu=docks_menu,
        table=table,
    )
    shortcuts.triggered.connect(lambda: show_shortcuts(window, actions))
    return actions


def _build_menus(
    window: MainWindow,
    a: Mapping[ActionId, QAction],
    tools: Mapping[str, QAction],
    layers: Mapping[str, QAction],
    classes: list[QAction],
) -> tuple[QMenu, QMenu]:
    A = ActionId
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addAction(a[A.OPEN_PROJECT])
    file_menu.addAction(a[A.OPEN_SHARED])
    recent_menu = file_menu.addMenu("Open &recent")
    recent_menu.aboutToShow.connect(window.fill_recent_menu)
    file_menu.addSeparator()
    file_menu.addActions([a[A.ADD_IMAGES], a[A.RESCAN]])
    file_menu.addSeparator()
    file_menu.addActions([a[A.IMPORT], a[A.EXPORT]])
    file_menu.addSeparator()
    file_menu.addAction(a[A.QUIT])

    edit = bar.addMenu("&Edit")
    edit.addActions([a[A.UNDO], a[A.REDO]])
    edit.addSeparator()
    edit.addActions([a[A.DELETE], a[A.DUPLICATE], a[A.CHANGE_CLASS], a[A.ADD_CLASS]])

    view = bar.addMenu("&View")
    view.addActions([a[A.FIT], a[A.ACTUAL]])
    view.addSeparator()
    view.addActions(list(layers.values()))
    view.addSeparator()
    docks_menu = view.addMenu("&Panels")
    for dock in window.findChildren(QDockWidget):
        docks_menu.addAction(dock.toggleViewAction())

    image = bar.addMenu("&Image")
    image.addActions([a[A.PREVIOUS], a[A.NEXT], a[A.NEXT_UNDONE], a[A.NEXT_UNCERTAIN]])
    image.addSeparator()
    image.addAction(a[A.MARK_DONE])

    tools_menu = bar.addMenu("&Tools")
    tools_menu.addActions(list(tools.values()))
    tools_menu.addSeparator()
    tools_menu.addMenu("Pick &class").addActions(classes)

    model = bar.addMenu("&Model")
    model.addActions([a[A.AUTOLABEL_IMAGE], a[A.AUTOLABEL_ALL], a[A.TRAIN]])
    model.addSeparator()
    model.addActions([a[A.ACCEPT_SELECTED], a[A.REJECT_SELECTED], a[A.ACCEPT_ALL], a[A.REJECT_ALL]])

    bar.addMenu("&Help").addAction(a[A.SHORTCUTS])
    return recent_menu, docks_menu


def shortcut_rows(table: CommandTable) -> list[tuple[str, str]]:
    """``(keys, what they do)`` for every command with keys, then the canvas's own keys, in the
    table's order: what F1 lists."""
    rows = []
    for spec in table.commands:
        if not spec.keys:
            continue
        if spec.id == ActionId.PICK_CLASS:
            rows.append((f"{spec.keys[0]} … {spec.keys[-1]}", spec.tip))
            continue
        keys = ", ".join(QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in spec.keys)
        rows.append((keys, spec.plain_text))
    rows += [(k.keys, k.what) for k in table.canvas_keys]
    return rows


def shortcuts_text(a: WindowActions) -> str:
    """Every shortcut of the window's actions, plus the keys the canvas handles itself, as HTML."""
    cells = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{t}</td></tr>" for k, t in shortcut_rows(a.table))
    return f"<table>{cells}</table>"


def show_shortcuts(window: MainWindow, a: WindowActions) -> None:
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


def _brush_spin(window: MainWindow) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(1, 500)
    spin.setValue(window.canvas.brush_size())
    spin.setSuffix(" px")
    spin.setToolTip("Brush and eraser size in image pixels ([ and ] on the canvas)")
    spin.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    spin.valueChanged.connect(lambda v: window.canvas.set_brush_size(int(v)))
    window.canvas.brushSizeChanged.connect(spin.setValue)  # [ and ] on the canvas show here too
    return spin


def _layers_button(layers: Mapping[str, QAction]) -> QToolButton:
    """One button whose menu shows or hides each layer (the View menu has them too)."""
    button = QToolButton()
    button.setText("Layers ▾")
    button.setIcon(icon("layers"))
    button.setToolTip("Show or hide masks, boxes, polygons and proposals")
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0px; }")  # the ▾ says it
    menu = QMenu(button)
    menu.addActions(list(layers.values()))
    button.setMenu(menu)
    return button


def _build_tool_bar(
    window: MainWindow, a: Mapping[ActionId, QAction], tools: Mapping[str, QAction], layers: Mapping[str, QAction]
) -> tuple[QToolBar, QSpinBox, QSlider, QToolButton]:
    A = ActionId
    bar = QToolBar("Tools", window)
    bar.setObjectName("tools_toolbar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    # what a narrow window moves into the bar's overflow menu first comes last: the view's
    # controls (they have keys and menu entries), not "Done" or "Next"
    bar.addActions(list(tools.values()))
    bar.addWidget(QLabel(" size "))
    spin = _brush_spin(window)
    bar.addWidget(spin)
    bar.addSeparator()
    bar.addActions([a[A.PREVIOUS], a[A.NEXT], a[A.NEXT_UNDONE], a[A.MARK_DONE]])
    bar.addSeparator()
    bar.addActions([a[A.AUTOLABEL_IMAGE], a[A.TRAIN]])
    bar.addSeparator()
    bar.addActions([a[A.FIT], a[A.ACTUAL]])
    layers_button = _layers_button(layers)
    bar.addWidget(layers_button)
    slider = _opacity_slider(window)
    bar.addWidget(QLabel(" opacity "))
    bar.addWidget(slider)
    for action_id in TEXT_BESIDE_ICON:
        button = bar.widgetForAction(a[action_id])
        if isinstance(button, QToolButton):
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
    return bar, spin, slider, layers_button
