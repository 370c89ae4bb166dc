"""The canvas tools driven by real mouse and key events; the store is checked after every step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gui_helpers import CanvasEnv, click, close_canvas, double_click, drag, key, make_project, open_canvas
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import decode_rle, encode_mask, rle_area
from labeler.core.store import ModelVersion


@pytest.fixture
def env(qtbot: QtBot, backend, tmp_path: Path) -> Iterator[CanvasEnv]:
    e = open_canvas(qtbot, make_project(backend, tmp_path))
    yield e
    close_canvas(e)


def _anns(env: CanvasEnv) -> list[Annotation]:
    return env.project.annotations(1)


def _proposal(env: CanvasEnv, **geometry: object) -> Annotation:
    version = env.project.add_model_version(ModelVersion(plugin="loc", settings={}, categories=(1,), checkpoint="m"))
    kind = Kind.BOX if "box_xywh" in geometry else Kind.MASK
    ann = env.project.add_annotation(
        Annotation(
            image_id=1, category_id=1, kind=kind, state=State.PROPOSED, model_version=version.id, score=0.7, **geometry
        )
    )
    env.canvas.reload_annotations()
    return ann


def test_draw_box_undo_redo(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_category(2)
    with qtbot.waitSignal(canvas.toolChanged, timeout=1000) as tool:
        canvas.set_tool("box")
    assert tool.args == ["box"]
    with qtbot.waitSignal(canvas.annotationsChanged, timeout=1000) as changed:
        drag(canvas, [(40, 50), (80, 90), (120, 130)])
    assert changed.args == [1]
    (box,) = _anns(env)
    assert box.kind is Kind.BOX and box.category_id == 2 and box.is_human and box.state is State.ACCEPTED
    x, y, w, h = box.box_xywh
    assert (x, y, w, h) == pytest.approx((40, 50, 80, 80), abs=1.0)
    assert canvas.selected_ids() == [box.id]  # the new box is selected
    assert env.project.edit_log(action="draw")[-1]["kind"] == "box"
    env.stack.undo()
    assert _anns(env) == [] and canvas.annotation_items() == {}
    env.stack.redo()
    assert [a.id for a in _anns(env)] == [box.id]
    # A click without a drag draws nothing; Escape cancels a drag in progress.
    click(canvas, 200, 200)
    assert len(_anns(env)) == 1


def test_draw_polygon_undo_redo(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("polygon")
    for p in [(20, 20), (100, 20), (100, 90), (60, 120)]:
        click(canvas, *p)
    key(canvas, Qt.Key.Key_Backspace)  # takes back (60, 120)
    key(canvas, Qt.Key.Key_Return)
    (poly,) = _anns(env)
    assert poly.kind is Kind.POLYGON and poly.category_id == 1
    assert poly.polygons[0] == pytest.approx(np.array([[20, 20], [100, 20], [100, 90]]), abs=1.0)
    env.stack.undo()
    assert _anns(env) == []
    env.stack.redo()
    assert [a.id for a in _anns(env)] == [poly.id]
    # Closing by clicking the first vertex, and Escape cancelling, work too.
    for p in [(150, 150), (200, 150), (200, 200), (151, 151)]:
        click(canvas, *p)
    assert len(_anns(env)) == 2 and len(_anns(env)[1].polygons[0]) == 3
    for p in [(10, 200), (40, 200)]:
        click(canvas, *p)
    key(canvas, Qt.Key.Key_Escape)
    key(canvas, Qt.Key.Key_Return)
    assert len(_anns(env)) == 2


def test_brush_then_eraser_with_undo(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("brush")
    canvas.set_brush_size(10)
    drag(canvas, [(50, 100), (70, 100), (90, 100), (110, 100)])
    (mask,) = _anns(env)
    assert mask.kind is Kind.MASK and mask.category_id == 1 and mask.rle["size"] == [240, 320]
    first_area = rle_area(mask.rle)
    assert 60 * 10 * 0.9 < first_area < 70 * 12  # a 60-pixel stroke, 10 wide, round ends
    pixels = decode_rle(mask.rle)
    assert pixels[100, 80] and not pixels[100, 130] and not pixels[120, 80]
    # A second stroke of the same class paints into the same mask.
    drag(canvas, [(80, 140), (80, 160)])
    (mask2,) = _anns(env)
    assert mask2.id == mask.id and rle_area(mask2.rle) > first_area + 150
    env.stack.undo()
    assert rle_area(_anns(env)[0].rle) == first_area
    env.stack.redo()
    # The eraser cuts a hole.
    canvas.set_tool("eraser")
    canvas.set_brush_size(6)
    drag(canvas, [(80, 90), (80, 110)])
    (erased,) = _anns(env)
    assert not decode_rle(erased.rle)[100, 80] and decode_rle(erased.rle)[100, 60]
    assert rle_area(erased.rle) < rle_area(mask2.rle)
    env.stack.undo()
    assert decode_rle(_anns(env)[0].rle)[100, 80]
    env.stack.redo()
    # Erasing all of it deletes the mask; undo brings it back with its id.
    canvas.set_brush_size(200)
    drag(canvas, [(60, 100), (100, 120)])
    assert _anns(env) == []
    env.stack.undo()
    assert [a.id for a in _anns(env)] == [mask.id]
    # Another class starts its own mask.
    canvas.set_tool("brush")
    canvas.set_category(3)
    canvas.set_brush_size(4)
    canvas.select([])
    drag(canvas, [(200, 200), (210, 200)])
    assert sorted(a.category_id for a in _anns(env)) == [1, 3]


def test_brush_size_keys(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_brush_size(20)
    sizes: list[int] = []
    canvas.brushSizeChanged.connect(sizes.append)
    key(canvas, Qt.Key.Key_BracketRight)
    key(canvas, Qt.Key.Key_BracketLeft)
    assert sizes == [25, 20]
    canvas.set_brush_size(0)
    assert canvas.brush_size() == 1


def test_move_and_resize_box(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("box")
    drag(canvas, [(40, 40), (100, 100)])
    (box,) = _anns(env)
    canvas.set_tool("select")
    drag(canvas, [(70, 70), (80, 75), (90, 80)])  # move by (20, 10)
    moved = env.project.annotation(box.id)
    assert moved.box_xywh == pytest.approx((60, 50, 60, 60), abs=1.0)
    # Drag the bottom-right handle of the (still selected) box.
    drag(canvas, [(120, 110), (130, 120), (150, 140)])
    resized = env.project.annotation(box.id)
    assert resized.box_xywh == pytest.approx((60, 50, 90, 90), abs=1.0)
    # Moves are clipped to the image.
    drag(canvas, [(100, 100), (200, 200), (400, 400)])
    x, y, w, h = env.project.annotation(box.id).box_xywh
    assert x + w == pytest.approx(320) and y + h == pytest.approx(240)
    env.stack.undo()
    env.stack.undo()
    assert env.project.annotation(box.id).box_xywh == pytest.approx((60, 50, 60, 60), abs=1.0)
    env.stack.undo()
    assert env.project.annotation(box.id).box_xywh == pytest.approx(box.box_xywh)


def test_polygon_vertex_editing(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("polygon")
    for p in [(50, 50), (150, 50), (150, 150), (50, 150)]:
        click(canvas, *p)
    key(canvas, Qt.Key.Key_Enter)
    (poly,) = _anns(env)
    canvas.set_tool("select")
    assert canvas.selected_ids() == [poly.id]
    drag(canvas, [(150, 150), (170, 160), (190, 170)])  # drag a vertex
    dragged = env.project.annotation(poly.id).polygons[0]
    assert dragged[2] == pytest.approx([190, 170], abs=1.0) and dragged[0] == pytest.approx([50, 50], abs=1.0)
    double_click(canvas, 100, 50)  # on the top edge: insert a vertex
    inserted = env.project.annotation(poly.id).polygons[0]
    assert len(inserted) == 5 and inserted[1] == pytest.approx([100, 50], abs=1.0)
    double_click(canvas, 50, 150)  # on a vertex: delete it
    assert len(env.project.annotation(poly.id).polygons[0]) == 4
    env.stack.undo()
    env.stack.undo()
    env.stack.undo()
    assert env.project.annotation(poly.id).polygons[0] == pytest.approx(poly.polygons[0])


def test_change_class_duplicate_delete(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("box")
    drag(canvas, [(40, 40), (100, 100)])
    (box,) = _anns(env)
    selections: list[list[int]] = []
    canvas.selectionChanged.connect(selections.append)
    canvas.change_class_selected(3)
    assert env.project.annotation(box.id).category_id == 3
    assert canvas.annotation_items()[box.id].tag.text() == "bird"
    canvas.duplicate_selected()
    _original, copy = _anns(env)
    assert copy.category_id == 3 and copy.box_xywh == pytest.approx((50, 50, 60, 60), abs=1.0)
    assert canvas.selected_ids() == [copy.id] and selections[-1] == [copy.id]
    key(canvas, Qt.Key.Key_Delete)
    assert [a.id for a in _anns(env)] == [box.id]
    env.stack.undo()  # the copy comes back with its id
    assert [a.id for a in _anns(env)] == [box.id, copy.id]
    env.stack.undo()
    env.stack.undo()
    assert [a.id for a in _anns(env)] == [box.id] and env.project.annotation(box.id).category_id == 1


def test_click_selects_smallest_and_ctrl_adds(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("box")
    drag(canvas, [(20, 20), (200, 200)])
    drag(canvas, [(50, 50), (80, 80)])
    big, small = _anns(env)
    canvas.set_tool("select")
    click(canvas, 60, 60)
    assert canvas.selected_ids() == [small.id]
    click(canvas, 150, 150, Qt.KeyboardModifier.ControlModifier)
    assert canvas.selected_ids() == [big.id, small.id]
    click(canvas, 300, 230)  # empty spot clears
    assert canvas.selected_ids() == []


def test_accept_reject_and_edit_proposals(env: CanvasEnv) -> None:
    canvas = env.canvas
    a = _proposal(env, box_xywh=(10, 10, 40, 40))
    b = _proposal(env, box_xywh=(100, 100, 40, 40))
    canvas.accept([a.id])
    canvas.reject([b.id])
    assert env.project.annotation(a.id).state is State.ACCEPTED
    assert env.project.annotation(a.id).model_version == a.model_version
    assert env.project.annotation(b.id).state is State.REJECTED
    assert b.id not in canvas.annotation_items()
    env.stack.undo()
    assert env.project.annotation(b.id).state is State.PROPOSED and b.id in canvas.annotation_items()
    env.stack.undo()
    assert env.project.annotation(a.id).state is State.PROPOSED
    # Moving a proposal makes it a human label.
    canvas.set_tool("select")
    drag(canvas, [(120, 120), (125, 125), (130, 130)])
    moved = env.project.annotation(b.id)
    assert moved.state is State.ACCEPTED and moved.model_version is None and moved.score is None
    assert moved.box_xywh == pytest.approx((110, 110, 40, 40), abs=1.0)
    env.stack.undo()
    assert env.project.annotation(b.id).is_proposal


def test_brushing_a_selected_proposal_mask_makes_it_human(env: CanvasEnv) -> None:
    canvas = env.canvas
    mask = np.zeros((240, 320), dtype=bool)
    mask[50:100, 50:100] = True
    prop = _proposal(env, rle=encode_mask(mask))
    canvas.set_tool("select")
    click(canvas, 75, 75)
    assert canvas.selected_ids() == [prop.id]
    canvas.set_tool("brush")
    canvas.set_brush_size(8)
    drag(canvas, [(100, 75), (120, 75)])
    (edited,) = _anns(env)
    assert edited.id == prop.id and edited.is_human and edited.state is State.ACCEPTED
    assert decode_rle(edited.rle)[75, 110]
    # Moving a mask shifts its pixels.
    canvas.set_tool("select")
    drag(canvas, [(60, 60), (65, 65), (70, 70)])
    shifted = decode_rle(env.project.annotation(prop.id).rle)
    assert shifted[60:110, 60:110].all() and not shifted[55, 55]


def test_new_labels_need_a_class(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_category(99)
    canvas.set_tool("box")
    with qtbot.waitSignal(canvas.errorOccurred, timeout=1000) as err:
        drag(canvas, [(10, 10), (50, 50)])
    assert "class" in err.args[0]
    assert _anns(env) == []


def test_a_class_added_after_opening_can_be_used(env: CanvasEnv) -> None:
    canvas = env.canvas
    fish = env.project.add_category("fish")
    canvas.set_category(fish.id)
    canvas.set_tool("box")
    drag(canvas, [(10, 10), (50, 50)])
    (box,) = _anns(env)
    assert box.category_id == fish.id
    assert canvas.annotation_items()[box.id].tag.text() == "fish"


def test_brush_at_the_image_edge_and_single_dabs(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("brush")
    canvas.set_brush_size(1)
    click(canvas, 10.5, 20.5)  # one dab of a 1-pixel brush paints the pixel under the cursor
    (dab,) = _anns(env)
    assert rle_area(dab.rle) >= 1 and decode_rle(dab.rle)[20, 10]
    canvas.set_brush_size(30)
    drag(canvas, [(315, 235), (330, 250)])  # runs off the bottom-right corner: clipped, no error
    pixels = decode_rle(env.project.annotation(dab.id).rle)
    assert pixels[239, 319] and pixels.shape == (240, 320)


def test_drawing_survives_labels_arriving_meanwhile(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("polygon")
    for p in [(20, 20), (100, 20)]:
        click(canvas, *p)
    _proposal(env, box_xywh=(200, 150, 30, 30))  # auto-label results arrive: the canvas reloads
    click(canvas, 100, 90)
    key(canvas, Qt.Key.Key_Return)
    kinds = sorted(a.kind.value for a in _anns(env))
    assert kinds == ["box", "polygon"]
    poly = next(a for a in _anns(env) if a.kind is Kind.POLYGON)
    assert len(poly.polygons[0]) == 3


def test_drawing_keys_win_over_window_shortcuts(qtbot: QtBot, env: CanvasEnv) -> None:
    from PySide6.QtGui import QAction, QKeySequence

    canvas = env.canvas
    fired: list[str] = []
    action = QAction("window escape", canvas)
    action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.triggered.connect(lambda: fired.append("esc"))
    canvas.addAction(action)
    canvas.set_tool("polygon")
    click(canvas, 20, 20)
    click(canvas, 60, 20)
    key(canvas, Qt.Key.Key_Escape)  # cancels the polygon, not the window's action
    assert fired == []
    key(canvas, Qt.Key.Key_Escape)  # nothing drawn: the window's shortcut gets it
    assert fired == ["esc"]


def test_a_box_too_small_to_see_is_not_drawn_and_the_user_is_told(qtbot: QtBot, env: CanvasEnv) -> None:
    from labeler.gui.canvas.tools import MIN_BOX_SCREEN_PX

    canvas = env.canvas
    canvas.set_tool("box")
    scale = canvas.view().scale_factor()
    side = (MIN_BOX_SCREEN_PX - 2) / scale  # a 4-screen-pixel drag
    with qtbot.waitSignal(canvas.errorOccurred, timeout=2000) as told:
        drag(canvas, [(100, 100), (100 + side / 2, 100 + side / 2), (100 + side, 100 + side)])
    assert _anns(env) == [] and "Zoom in" in told.args[0]
    big = (MIN_BOX_SCREEN_PX + 4) / scale
    drag(canvas, [(100, 100), (100 + big / 2, 100 + big / 2), (100 + big, 100 + big)])
    assert len(_anns(env)) == 1
