"""The domain rules the window applies, each on its own, without Qt: an edited proposal becomes a
human label; an image's state; which proposals are shown; review time; accepting is a state change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from annotation_support import proposal
from PIL import Image

from labeler.core.annotation import Annotation, Kind, State, as_human
from labeler.core.effort import project_effort
from labeler.core.image_state import ImageState, image_state
from labeler.core.proposal_filter import ProposalFilter
from labeler.core.review import REVIEW_CAP_SECONDS, ReviewClock, ReviewTime, log_review
from labeler.core.store import ModelVersion, Project, ProjectError


def _proposal(score: float | None = 0.8, **kw: object) -> Annotation:
    return Annotation(
        image_id=1,
        category_id=1,
        kind=Kind.BOX,
        box_xywh=(1, 2, 3, 4),
        state=State.PROPOSED,
        model_version=7,
        score=score,
        id=5,
        **kw,
    )


def test_an_edited_proposal_becomes_a_human_label() -> None:
    human = as_human(_proposal(attributes={"note": "x"}))
    assert human.state is State.ACCEPTED and human.model_version is None and human.score is None
    assert human.is_human and human.id == 5 and human.box_xywh == (1.0, 2.0, 3.0, 4.0)
    assert human.attributes == {"note": "x"}


@pytest.mark.parametrize(
    ("done", "counts", "state"),
    [
        (True, {"proposed": 3}, ImageState.DONE),
        (False, {"proposed": 1, "accepted": 2}, ImageState.PROPOSALS),
        (False, {"accepted": 2, "rejected": 4}, ImageState.LABELLED),
        (False, {"rejected": 4}, ImageState.UNLABELLED),
        (False, {}, ImageState.UNLABELLED),
    ],
)
def test_an_images_state_from_its_annotations(done: bool, counts: dict[str, int], state: ImageState) -> None:
    assert image_state(done=done, counts=counts) is state


def test_which_proposals_are_shown() -> None:
    shown = ProposalFilter(min_score=0.5)
    assert shown.passes(score=0.5, plugin="a") and not shown.passes(score=0.49, plugin="a")
    assert shown.passes(score=None, plugin="a")  # no score: never hidden by the threshold
    one = ProposalFilter(min_score=0.2, plugin="segmenter")
    assert one.passes(score=0.9, plugin="segmenter") and not one.passes(score=0.9, plugin="localizer")
    human = as_human(_proposal(score=0.1))
    assert one.shows(human, plugin=None) and not one.shows(_proposal(score=0.1), plugin="segmenter")
    with pytest.raises(ValueError, match="threshold"):
        ProposalFilter(min_score=1.5)


def test_review_time_runs_from_the_proposals_to_the_last_decision_capped() -> None:
    clock = ReviewClock()
    assert clock.show(1, now=100.0) is None
    clock.reviewed(1, now=104.0)
    clock.reviewed(2, now=150.0)  # not the image shown: ignored
    clock.reviewed(1, now=109.0)
    assert clock.show(2, now=120.0) == ReviewTime(1, 9.0)  # leaving image 1 ends its visit
    assert clock.leave() is None  # nothing accepted or rejected on image 2: no cost
    clock.show(3, now=0.0)
    clock.proposals_appeared(3, now=50.0)  # auto-labelled while shown: review starts now
    clock.reviewed(3, now=55.0)
    assert clock.leave() == ReviewTime(3, 5.0)
    clock.show(4, now=0.0)
    clock.reviewed(4, now=1000.0)  # walked away
    assert clock.leave() == ReviewTime(4, REVIEW_CAP_SECONDS)
    assert ReviewClock(cap_seconds=10).show(1, now=0) is None


def _project(tmp_path: Path) -> Project:
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "a.png")
    project = Project.create(tmp_path / "p")
    project.add_images([tmp_path / "a.png"])
    project.add_category("cell")
    return project


def test_review_time_feeds_the_effort_estimate(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        log_review(project, ReviewTime(1, 12.0))
        log_review(project, None)
        assert project_effort(project).review_seconds == 12.0


def test_accepting_a_proposal_is_one_update_and_reads_nothing(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        version = project.add_model_version(
            ModelVersion(id=None, plugin="p", checkpoint="x", categories=(1,), settings={})
        )
        stored = project.add_annotations(
            [
                proposal(1, 1, version=version.id, score=0.9, box_xywh=(1, 1, 5, 5)),
                proposal(1, 1, version=version.id, score=0.7, box_xywh=(9, 9, 5, 5)),
            ]
        )
        statements: list[str] = []
        project._conn.set_trace_callback(statements.append)
        accepted = project.set_states(stored[:1], State.ACCEPTED)
        project._conn.set_trace_callback(None)
        assert [s.split()[0] for s in statements if not s.startswith(("BEGIN", "COMMIT"))] == ["UPDATE", "INSERT"]
        assert accepted[0].state is State.ACCEPTED and accepted[0].model_version == version.id
        assert project.annotation(stored[0].id).state is State.ACCEPTED
        assert project.annotation(stored[1].id).state is State.PROPOSED
        assert project.accepted_proposal_counts() == {"box": 1}
        assert [r["action"] for r in project.edit_log()][-1] == "accepted"
        project.delete_annotation(stored[1].id)
        with pytest.raises(ProjectError, match="no longer stored"):
            project.set_states(stored, State.REJECTED)
        assert project.annotation(stored[0].id).state is State.ACCEPTED  # nothing changed
