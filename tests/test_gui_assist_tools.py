"""The box-to-mask tool driven by real mouse and key events (GrabCut in a worker thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gui_helpers import CanvasEnv, click, close_canvas, drag, key, make_project, open_canvas, press, release
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import decode_rle, encode_mask
from labeler.core.store import ModelVersion

RIGHT = Qt.MouseButton.RightButton


@pytest.fixture
def env(qtbot: QtBot, backend, tmp_path: Path) -> Iterator[CanvasEnv]:
    e = open_canvas(qtbot, make_project(backend, tmp_path))
    yield e
    close_canvas(e)


def _settle(qtbot: QtBot, env: CanvasEnv) -> None:
    tool = env.canvas._tools["assist"]
    qtbot.waitUntil(lambda: not tool.busy() and tool.result() is not None, timeout=10_000)
    qtbot.wait(20)


def test_box_to_mask_clicks_enter_undo(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("assist")
    # the dark square of the generated image is x 80..160, y 60..120
    drag(canvas, [(70, 50), (120, 90), (170, 130)])
    _settle(qtbot, env)
    tool = canvas._tools["assist"]
    first = tool.result().full(320, 240)
    truth = np.zeros((240, 320), bool)
    truth[60:120, 80:160] = True
    assert (first & truth).sum() / (first | truth).sum() > 0.9
    assert env.project.annotations(1) == []  # only a preview so far
    # a right click inside the square says "not object" there: the preview loses that spot
    press(canvas, 100, 80, button=RIGHT)
    release(canvas, 100, 80, button=RIGHT)
    qtbot.waitUntil(lambda: not tool.busy(), timeout=10_000)
    qtbot.wait(20)
    assert not tool.result().full(320, 240)[80, 100]
    click(canvas, 100, 80)  # and a left click there, later, wins: object again
    qtbot.waitUntil(lambda: not tool.busy(), timeout=10_000)
    key(canvas, Qt.Key.Key_Return)
    (ann,) = env.project.annotations(1)
    assert ann.kind is Kind.MASK and ann.is_human and ann.state is State.ACCEPTED and ann.category_id == 1
    assert (decode_rle(ann.rle) & truth).sum() / (decode_rle(ann.rle) | truth).sum() > 0.85
    env.stack.undo()
    assert env.project.annotations(1) == []
    env.stack.redo()
    assert len(env.project.annotations(1)) == 1


def test_escape_drops_the_mask(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("assist")
    drag(canvas, [(70, 50), (170, 130)])
    _settle(qtbot, env)
    key(canvas, Qt.Key.Key_Escape)
    assert not canvas._tools["assist"].making()
    key(canvas, Qt.Key.Key_Return)
    assert env.project.annotations(1) == []


def test_click_takes_one_region_of_a_mask_proposal(env: CanvasEnv) -> None:
    canvas = env.canvas
    mask = np.zeros((240, 320), bool)
    mask[10:40, 10:40] = True
    mask[150:200, 200:260] = True
    version = env.project.add_model_version(ModelVersion(plugin="seg", settings={}, categories=(1,), checkpoint="m"))
    env.project.add_annotation(
        Annotation(
            image_id=1,
            category_id=1,
            kind=Kind.MASK,
            state=State.PROPOSED,
            model_version=version.id,
            score=0.8,
            rle=encode_mask(mask),
        )
    )
    canvas.reload_annotations()
    canvas.set_tool("assist")
    click(canvas, 230, 170)
    anns = env.project.annotations(1, states=(State.PROPOSED, State.ACCEPTED))
    accepted = [a for a in anns if a.state is State.ACCEPTED]
    proposed = [a for a in anns if a.state is State.PROPOSED]
    assert len(accepted) == 1 and accepted[0].is_human
    assert decode_rle(accepted[0].rle).sum() == 50 * 60
    assert len(proposed) == 1 and decode_rle(proposed[0].rle).sum() == 30 * 30 and proposed[0].score == 0.8
    env.stack.undo()
    (back,) = env.project.annotations(1, states=(State.PROPOSED, State.ACCEPTED))
    assert back.state is State.PROPOSED and decode_rle(back.rle).sum() == mask.sum()


def test_outline_snaps_to_the_square_edges(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("outline")
    # corners near (not on) the dark square x 80..160, y 60..120: the sides follow its edges
    for p in [(81, 61), (158, 62), (159, 118), (82, 119)]:
        click(canvas, *p)
    key(canvas, Qt.Key.Key_Return)
    (poly,) = env.project.annotations(1)
    assert poly.kind is Kind.POLYGON
    from labeler.core.geometry import polygons_to_mask

    got = polygons_to_mask(poly.polygons, 240, 320)
    truth = np.zeros((240, 320), bool)
    truth[60:120, 80:160] = True
    assert (got & truth).sum() / (got | truth).sum() > 0.9
