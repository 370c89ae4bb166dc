"""The time-saved estimate behind the status bar (labeler.core.effort)."""

from __future__ import annotations

from pathlib import Path

import pytest
from annotation_support import proposal

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.effort import DEFAULT_DRAW_SECONDS, estimate_effort, format_duration, project_effort
from labeler.core.store import ModelVersion, Project


def test_defaults_when_nothing_was_drawn_by_hand() -> None:
    effort = estimate_effort(draws=[], accepted={"box": 3, "mask": 2}, review_seconds=20.0)
    assert effort.draw_seconds == dict(DEFAULT_DRAW_SECONDS)
    assert effort.saved_seconds == pytest.approx(3 * 7.0 + 2 * 45.0 - 20.0)
    assert effort.accepted_total == 5


def test_median_of_hand_drawn_labels_replaces_the_default() -> None:
    draws = [("box", 4.0), ("box", 10.0), ("box", 5.0), ("polygon", 12.0), ("box", 0.0), ("mask", None)]
    effort = estimate_effort(draws=draws, accepted={"box": 10, "polygon": 1})
    assert effort.draw_seconds["box"] == 5.0  # median of 4, 5, 10 (0 and None ignored)
    assert effort.draw_seconds["polygon"] == 12.0
    assert effort.draw_seconds["mask"] == 45.0
    assert effort.saved_seconds == pytest.approx(10 * 5.0 + 12.0)


def test_review_longer_than_drawing_is_a_cost() -> None:
    effort = estimate_effort(draws=[("box", 2.0)], accepted={"box": 1}, review_seconds=30.0)
    assert effort.saved_seconds == pytest.approx(-28.0)
    assert format_duration(effort.saved_seconds) == "-28 s"


def test_format_duration() -> None:
    assert format_duration(0) == "0 s"
    assert format_duration(59.6) == "1 min"
    assert format_duration(754) == "12 min"
    assert format_duration(3600 + 5 * 60 + 3) == "1 h 05 min"


def test_project_effort_counts_unchanged_accepted_proposals_only(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    image_id = project.add_images([tmp_path / "a.png"])[0]
    cat = project.add_category("thing")
    version = project.add_model_version(
        ModelVersion(plugin="demo", settings={}, categories=(cat.id,), checkpoint="models/1.safetensors")
    )
    box = (1.0, 2.0, 3.0, 4.0)
    proposals = project.replace_proposals(
        image_id,
        plugin="demo",
        proposals=[proposal(image_id, cat.id, version=version.id, score=0.9, box_xywh=box) for _ in range(3)],
    )
    project.set_state(proposals[0].id, State.ACCEPTED)  # accepted as proposed: saves a box
    project.set_state(proposals[1].id, State.REJECTED)  # rejected: saves nothing
    # the third was edited: it became a human label (model_version None)
    project.update_annotation(
        Annotation(id=proposals[2].id, image_id=image_id, category_id=cat.id, kind=Kind.BOX, box_xywh=(0, 0, 5, 5))
    )
    project.log_edit("draw", image_id=image_id, kind="box", seconds=9.0)
    project.log_edit("review", image_id=image_id, seconds=2.5)
    effort = project_effort(project)
    assert effort.accepted == {"box": 1}
    assert effort.draw_seconds["box"] == 9.0
    assert effort.review_seconds == 2.5
    assert effort.saved_seconds == pytest.approx(9.0 - 2.5)
    project.close()


def test_store_accepted_proposal_counts_per_kind(tmp_path: Path) -> None:
    """``Project.accepted_proposal_counts``: accepted annotations still tagged with a model version,
    per kind; hand labels, pending and rejected proposals are not counted."""
    project = Project.create(tmp_path / "p")
    image_id = project.add_images([tmp_path / "a.png"])[0]
    cat = project.add_category("thing")
    assert project.accepted_proposal_counts() == {}
    version = project.add_model_version(
        ModelVersion(plugin="demo", settings={}, categories=(cat.id,), checkpoint="models/1.safetensors")
    )
    kinds = [Kind.BOX, Kind.BOX, Kind.POLYGON, Kind.BOX]
    polygon = [[1.0, 1.0, 8.0, 1.0, 8.0, 8.0]]
    proposals = project.replace_proposals(
        image_id,
        plugin="demo",
        proposals=[
            proposal(
                image_id,
                cat.id,
                version=version.id,
                score=0.5,
                **({"box_xywh": (1.0, 1.0, 4.0, 4.0)} if k is Kind.BOX else {"polygons": polygon}),
            )
            for k in kinds
        ],
    )
    for p in proposals[:3]:
        project.set_state(p.id, State.ACCEPTED)
    project.add_annotation(
        Annotation(image_id=image_id, category_id=cat.id, kind=Kind.BOX, box_xywh=(0, 0, 2, 2))
    )  # a hand label, accepted, no version
    assert project.accepted_proposal_counts() == {"box": 2, "polygon": 1}
    project.close()
