"""The window's actions, F1's list and icons come from resources/; the canvas tools reach the
canvas only through the ToolHost protocol."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QToolButton
from pytestqt.qtbot import QtBot

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")  # offscreen platform

from gui_helpers import close_window, show_window  # noqa: E402

from labeler.core.resources import command_table, icon_names  # noqa: E402
from labeler.gui.actions import TEXT_BESIDE_ICON, ActionId, shortcut_rows, shortcuts_text  # noqa: E402
from labeler.gui.canvas.canvas import AnnotationCanvas  # noqa: E402
from labeler.gui.canvas.host import ToolHost, ToolView  # noqa: E402
from labeler.gui.canvas.view import CanvasView  # noqa: E402
from labeler.gui.icons import app_icon, icon  # noqa: E402
from labeler.gui.main_window import MainWindow  # noqa: E402

CANVAS_DIR = Path(__file__).resolve().parents[1] / "labeler" / "gui" / "canvas"


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    win = show_window(qtbot)
    yield win
    close_window(win)


def test_the_actions_are_the_command_table(window: MainWindow) -> None:
    table = command_table()
    assert {c.id for c in table.commands} == {a.value for a in ActionId}
    for spec in table.commands:
        if spec.id == ActionId.PICK_CLASS:
            assert [a.shortcut().toString() for a in window.actions_.classes] == list(spec.keys)
            continue
        action = window.actions_[ActionId(spec.id)]
        assert [k.toString() for k in action.shortcuts()] == [QKeySequence(k).toString() for k in spec.keys], spec.id
        if spec.tip:
            assert action.statusTip() == spec.tip
        if spec.icon:
            assert not action.icon().isNull(), spec.id
    # the undo stack's own action, named by the table
    assert window.actions_[ActionId.UNDO].text().replace("&", "").startswith("Undo")


def test_f1_lists_every_key_of_the_table(window: MainWindow) -> None:
    text = shortcuts_text(window.actions_)
    table = command_table()
    keyed = [c for c in table.commands if c.keys]
    assert len(shortcut_rows(table)) == len(keyed) + len(table.canvas_keys)
    for spec in keyed:
        if spec.id != ActionId.PICK_CLASS:
            assert f"<b>{QKeySequence(spec.keys[0]).toString(QKeySequence.SequenceFormat.NativeText)}" in text
    for key in table.canvas_keys:
        assert f"<b>{key.keys}</b>" in text


def test_the_tool_bar_shows_icons_with_text_where_needed(window: MainWindow) -> None:
    bar = window.actions_.tool_bar
    for action in bar.actions():
        button = bar.widgetForAction(action)
        if isinstance(button, QToolButton) and not action.isSeparator():
            assert not button.icon().isNull(), action.text()
    for action_id in TEXT_BESIDE_ICON:
        button = bar.widgetForAction(window.actions_[action_id])
        assert isinstance(button, QToolButton) and button.text()
    assert not window.windowIcon().isNull()
    assert window.windowIcon().cacheKey() == app_icon().cacheKey()
    for name in icon_names():
        assert not icon(name).pixmap(24, 24).isNull(), name


def _tool_uses() -> dict[str, set[str]]:
    """The canvas members each tool module reaches: ``self.canvas.X`` and ``canvas.X``."""
    uses: dict[str, set[str]] = {}
    for module in ("tools.py", "assist_tools.py"):
        tree = ast.parse((CANVAS_DIR / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if (
                isinstance(owner, ast.Attribute)
                and owner.attr == "canvas"
                and isinstance(owner.value, ast.Name)
                and owner.value.id == "self"
            ) or (isinstance(owner, ast.Name) and owner.id == "canvas"):
                uses.setdefault(module, set()).add(node.attr)
    return uses


def _members(protocol: type) -> set[str]:
    return {n for n in vars(protocol) if not n.startswith("_")}


def test_the_tools_reach_the_canvas_only_through_the_host_protocol() -> None:
    allowed = _members(ToolHost)
    for module, used in _tool_uses().items():
        assert used, module
        assert used <= allowed, f"{module} uses {sorted(used - allowed)}, which ToolHost does not name"
    assert len(allowed) <= 25  # small, on purpose


@pytest.mark.parametrize(("protocol", "implementation"), [(ToolHost, AnnotationCanvas), (ToolView, CanvasView)])
def test_the_canvas_provides_the_host_protocol(protocol: type, implementation: type) -> None:
    for name in _members(protocol):
        member = getattr(implementation, name, None)
        assert callable(member), f"{implementation.__name__} has no {name}"
        wanted = list(inspect.signature(getattr(protocol, name)).parameters)
        if isinstance(member, type(AnnotationCanvas.image_size)):  # a Python method (not a Qt builtin)
            assert list(inspect.signature(member).parameters) == wanted, name
