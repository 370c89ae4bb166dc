"""Undo commands: every change is in the store at once, and undo / redo restore it exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gui_helpers import make_project
from PySide6.QtGui import QUndoStack

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import encode_mask
from labeler.core.store import ModelVersion, Project
from labeler.gui.controllers import undo


@pytest.fixture
def project(backend, tmp_path: Path) -> Project:
    p = make_project(backend, tmp_path, images=1)
    yield p
    p.close()


def _box(image_id: int = 1, category_id: int = 1, **kw: object) -> Annotation:
    return Annotation(image_id=image_id, category_id=category_id, kind=Kind.BOX, box_xywh=(10, 20, 30, 40), **kw)


def _proposal(project: Project, score: float = 0.8) -> Annotation:
    version = project.add_model_version(ModelVersion(plugin="p", settings={}, categories=(1,), checkpoint="x"))
    return project.add_annotation(_box(state=State.PROPOSED, model_version=version.id, score=score))


def test_add_undo_redo_keeps_the_id(qapp: object, project: Project) -> None:
    stack = QUndoStack()
    heard: list[int] = []
    cmd = undo.add_annotations(project, [_box()], notify=heard.append, draw_seconds=2.5)
    stack.push(cmd)
    (ann_id,) = cmd.added_ids()
    assert [a.id for a in project.annotations(1)] == [ann_id]
    stack.undo()
    assert project.annotations(1) == []
    stack.redo()
    assert [a.id for a in project.annotations(1)] == [ann_id]
    assert heard == [1, 1, 1]
    draws = project.edit_log(action="draw")
    assert len(draws) == 1 and draws[0]["seconds"] == pytest.approx(2.5) and draws[0]["kind"] == "box"


def test_delete_undo_restores_the_same_annotation(qapp: object, project: Project) -> None:
    mask = np.zeros((240, 320), dtype=bool)
    mask[5:50, 7:90] = True
    ann = project.add_annotation(Annotation(image_id=1, category_id=2, kind=Kind.MASK, rle=encode_mask(mask)))
    stack = QUndoStack()
    stack.push(undo.delete_annotations(project, [ann]))
    assert project.annotations(1) == []
    stack.undo()
    (back,) = project.annotations(1)
    assert back.id == ann.id and back.category_id == 2 and back.rle == ann.rle
    stack.redo()
    assert project.annotations(1) == []


def test_editing_a_proposal_makes_it_human(qapp: object, project: Project) -> None:
    prop = _proposal(project)
    stack = QUndoStack()
    stack.push(
        undo.edit_annotations(
            project, [(prop, Annotation(**{**prop.__dict__, "box_xywh": (1, 2, 3, 4)}))], text="Resize"
        )
    )
    edited = project.annotation(prop.id)
    assert edited.box_xywh == (1, 2, 3, 4)
    assert edited.state is State.ACCEPTED and edited.model_version is None and edited.score is None
    stack.undo()
    back = project.annotation(prop.id)
    assert back.box_xywh == (10, 20, 30, 40) and back.state is State.PROPOSED and back.score == pytest.approx(0.8)


def test_accept_and_reject_are_undoable(qapp: object, project: Project) -> None:
    a, b = _proposal(project, 0.9), _proposal(project, 0.4)
    stack = QUndoStack()
    stack.push(undo.set_states(project, [a], State.ACCEPTED))
    stack.push(undo.set_states(project, [b], State.REJECTED))
    assert project.annotation(a.id).state is State.ACCEPTED
    assert project.annotation(a.id).model_version == a.model_version  # accepted, not edited: source kept
    assert project.annotation(b.id).state is State.REJECTED
    stack.undo()
    assert project.annotation(b.id).state is State.PROPOSED
    stack.undo()
    assert project.annotation(a.id).state is State.PROPOSED
    assert stack.undoText() == "" and stack.redoText() == "Accept proposal"


def test_mixed_change_is_one_step(qapp: object, project: Project) -> None:
    old = project.add_annotation(_box())
    stack = QUndoStack()
    stack.push(undo.ChangeAnnotations(project, [(old, None), (None, _box(category_id=3))], "Swap"))
    (new,) = project.annotations(1)
    assert new.category_id == 3
    stack.undo()
    (back,) = project.annotations(1)
    assert back.id == old.id and back.category_id == 1
    stack.redo()
    assert [a.category_id for a in project.annotations(1)] == [3]


def test_a_refused_change_writes_nothing_and_leaves_the_stack(qapp: object, project: Project) -> None:
    kept = project.add_annotation(_box())
    gone = project.add_annotation(_box(category_id=2))
    project.delete_annotation(gone.id)  # deleted elsewhere meanwhile
    errors: list[str] = []
    stack = QUndoStack()
    cmd = undo.ChangeAnnotations(
        project,
        [(kept, None), (gone, Annotation(**{**gone.__dict__, "category_id": 3}))],
        "Edit",
        on_error=errors.append,
    )
    stack.push(cmd)
    assert cmd.error is not None and errors == [cmd.error] and "no annotation" in cmd.error
    assert [a.id for a in project.annotations(1)] == [kept.id]  # rolled back: the delete did not happen
    assert stack.count() == 0


def test_commands_check_their_input(qapp: object, project: Project) -> None:
    with pytest.raises(ValueError, match="before or an after"):
        undo.ChangeAnnotations(project, [(None, None)], "x")
    with pytest.raises(ValueError, match="must be stored"):
        undo.delete_annotations(project, [_box()])


def test_undo_runs_back_through_several_edits_of_one_annotation(qapp: object, project: Project) -> None:
    ann = project.add_annotation(_box())
    stack = QUndoStack()
    current = ann
    for x in (11, 12, 13):
        moved = replace(current, box_xywh=(x, 20, 30, 40))
        stack.push(undo.edit_annotations(project, [(current, moved)], text="Move"))
        current = project.annotation(ann.id)
    for x in (12, 11, 10):
        stack.undo()
        assert project.annotation(ann.id).box_xywh == (x, 20, 30, 40)
    for x in (11, 12, 13):
        stack.redo()
        assert project.annotation(ann.id).box_xywh == (x, 20, 30, 40)
    stack.undo()
    stack.push(undo.set_states(project, [project.annotation(ann.id)], State.REJECTED))
    stack.undo()
    stack.undo()  # the state command's undo moved the revision too: the edit before it still undoes
    assert project.annotation(ann.id).box_xywh == (11, 20, 30, 40)


def test_undo_never_overwrites_someone_elses_later_save(qapp: object, project: Project) -> None:
    ann = project.add_annotation(_box())
    stack = QUndoStack()
    errors: list[str] = []
    stack.push(
        undo.edit_annotations(
            project, [(ann, replace(ann, box_xywh=(50, 20, 30, 40)))], text="Move", on_error=errors.append
        )
    )
    other = project.open_again()  # another desktop
    try:
        theirs = other.annotation(ann.id)
        other.update_annotation(replace(theirs, box_xywh=(70, 20, 30, 40)))
    finally:
        other.close()
    stack.undo()
    assert project.annotation(ann.id).box_xywh == (70, 20, 30, 40)  # their save stands
    assert len(errors) == 1 and "someone else" in errors[0]
    assert stack.count() == 0  # the refused command left the stack
