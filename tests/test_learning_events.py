"""The events between the CLI children and the window: written and read through one module."""

from __future__ import annotations

import json
import math

import pytest

from labeler.learning import events as ev

ALL_EVENTS = [
    ev.TrainStart(
        plugin="localizer",
        train_images=8,
        validation_images=2,
        skipped={"no box": 1},
        settings={"lr": 0.001},
        parent=3,
        time_budget=60.0,
        epochs=None,
        world_size=1,
        refit=True,
        messages=("warm start from #3",),
    ),
    ev.TrainProgress(
        step=5,
        elapsed=2.5,
        eta=7.5,
        fraction=0.25,
        epoch=1.5,
        losses={"total": 0.75, "box": 0.5},
        lr=0.001,
        images_per_second=12.0,
        metric=None,
        metrics={},
        phase="train",
    ),
    ev.TrainValidation(
        step=6,
        elapsed=3.0,
        eta=6.0,
        fraction=0.3,
        losses={"total": 0.5},
        metric=0.61,
        metrics={"miou": 0.61, "dice": 0.7},
    ),
    ev.TrainEvaluating(validation_images=2),
    ev.TrainRefit(images=10, validation_images=2, seconds=4.0, epochs=None, lr=0.0005),
    ev.TrainDone(
        version=4,
        activated=True,
        metric=0.62,
        metrics={"miou": 0.62},
        previous_metric=0.5,
        checkpoint="models/4.safetensors",
        messages=("ok",),
        skipped={"no box": 1},
        seconds=12.0,
        refit={"images": 10, "steps": 3},
        selection_checkpoint="models/4-selection.safetensors",
    ),
    ev.TrainCancelled(steps=17),
    ev.AutoLabelStart(version=4, plugin="localizer", total=12),
    ev.AutoLabelProgress(
        done=3, total=12, image_id=7, proposals=2, uncertainty=0.4, images_per_second=3.0, eta=3.0, error=None
    ),
    ev.AutoLabelDone(images=12, proposals=30, failed={"9": "not an image"}, seconds=4.0, cancelled=False),
    ev.JobError(message="plugin 'nonesuch' is not installed", plugin="nonesuch", job=ev.AUTO_LABEL),
    ev.JobError(message="no done images", job=ev.TRAIN),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: f"{type(e).__name__}")
def test_every_event_survives_the_round_trip(event: ev.Event) -> None:
    line = ev.to_line(event)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["v"] == ev.PROTOCOL_VERSION and obj["event"] == event.KIND
    assert ev.parse_line(line) == event


def test_train_reports_become_typed_events() -> None:
    """What the training runner hands its progress callback is read into the dataclasses."""
    event = ev.train_event(
        {
            "event": "progress",
            "step": 3,
            "elapsed": 1.0,
            "eta": 3.0,
            "losses": {"class": 0.5, "box": 0.25},
            "unknown_new_field": 1,
        }
    )
    assert isinstance(event, ev.TrainProgress) and event.loss == 0.75 and event.done_fraction == 0.25
    assert isinstance(
        ev.train_event({"event": "validation", "step": 3, "elapsed": 1.0, "metric": 0.5}), ev.TrainValidation
    )
    with pytest.raises(ValueError, match="lacks 'step'"):
        ev.train_event({"event": "progress", "elapsed": 1.0})


def test_not_finite_numbers_travel_as_null() -> None:
    line = ev.to_line(ev.TrainProgress(step=1, elapsed=1.0, eta=math.nan, losses={"total": math.inf}))
    assert "NaN" not in line and "Infinity" not in line
    back = ev.parse_line(line)
    assert isinstance(back, ev.TrainProgress) and back.eta is None and math.isnan(back.losses["total"])


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"v": 1, "job": "train", "event": "progress", "step": 1', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"event": "start", "total": 5}', "protocol version None"),
        ('{"v": 2, "job": "train", "event": "start"}', "protocol version 2"),
        ('{"v": 1, "job": "paint", "event": "start"}', "unknown job 'paint'"),
        ('{"v": 1, "job": "train", "event": "dance"}', "unknown train event 'dance'"),
        ('{"v": 1, "job": "auto-label", "event": "progress", "total": 3}', "lacks 'done'"),
        ('{"v": 1, "job": "auto-label", "event": "progress", "done": "3", "total": 3}', "field 'done'"),
        ('{"v": 1, "job": "auto-label", "event": "progress", "done": true, "total": 3}', "field 'done'"),
        (
            '{"v": 1, "job": "train", "event": "done", "version": 1, "activated": true, "metrics": [1]}',
            "field 'metrics'",
        ),
    ],
)
def test_a_malformed_line_says_why_and_never_raises(line: str, why: str) -> None:
    result = ev.parse_line(line)
    assert isinstance(result, ev.Unreadable) and why in result.reason and result.line == line


def test_one_eta_formula() -> None:
    assert ev.eta_seconds(elapsed=10.0, fraction=5 / 20) == pytest.approx(30.0)
    assert math.isnan(ev.eta_seconds(elapsed=1.0, fraction=0.0))
    assert ev.eta_seconds(elapsed=4.0, fraction=1.0) == 0.0
    assert ev.fraction_from_eta(elapsed=30.0, eta=ev.eta_seconds(elapsed=30.0, fraction=0.25)) == pytest.approx(0.25)
    assert ev.fraction_from_eta(elapsed=3.0, eta=None) is None
    assert ev.format_eta(math.nan) == "estimating time left…"
    assert ev.format_eta(75) == "about 1 min 15 s left" and ev.format_eta(9.4) == "about 9 s left"
