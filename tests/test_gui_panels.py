"""Panels fed with the training runner's events, and the loss plot."""

from __future__ import annotations

import math

import pytest
from pytestqt.qtbot import QtBot

pytest.importorskip("pytestqt")

# The offscreen platform cannot resize native windows; that notice is about the test platform, not us.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

from labeler.gui.panels.autolabel_panel import AutoLabelPanel  # noqa: E402
from labeler.gui.panels.plot import LossPlot  # noqa: E402
from labeler.gui.panels.training_panel import TrainingPanel  # noqa: E402
from labeler.learning.events import train_event  # noqa: E402


def test_training_panel_follows_a_run(qtbot: QtBot) -> None:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_running(True, "segmenter")
    assert not panel.train_button.isEnabled() and panel.cancel_button.isEnabled()
    panel.show_event(
        train_event(
            {
                "event": "start",
                "plugin": "segmenter",
                "train_images": 8,
                "validation_images": 2,
                "skipped": {"no box": 1},
                "messages": ["training from scratch"],
            }
        )
    )
    assert "Training on 8 images (2 for validation); skipped: 1 no box" in panel.status.text()
    for step in range(1, 6):
        panel.show_event(
            train_event(
                {
                    "event": "progress",
                    "epoch": step / 2,
                    "step": step,
                    "losses": {"total": 1.0 / step},
                    "elapsed": step,
                    "eta": 10 - step,
                }
            )
        )
    panel.show_event(
        train_event(
            {"event": "validation", "step": 5, "losses": {"total": 0.2}, "metric": 0.61, "elapsed": 5, "eta": 5}
        )
    )
    assert panel.progress.value() == 500
    assert len(panel.plot.loss_series.points) == 6 and panel.plot.metric_series.points == [(5.0, 0.61)]
    assert "val 0.610" in panel.status.text() and "about 5 s left" in panel.status.text()
    panel.plot.grab()  # paints without error with both curves
    panel.show_event(train_event({"event": "evaluating", "validation_images": 2}))
    assert "Measuring" in panel.status.text()
    panel.show_event(
        train_event(
            {"event": "refit", "images": 10, "validation_images": 2, "seconds": 2.0, "epochs": None, "lr": 0.001}
        )
    )
    assert panel.status.text() == "Folding in the 2 validation images…"
    panel.show_event(
        train_event(
            {
                "event": "progress",
                "phase": "refit",
                "epoch": 0.5,
                "step": 6,
                "fraction": 0.9,
                "losses": {"total": 0.1},
                "elapsed": 9,
                "eta": 1,
            }
        )
    )
    assert panel.progress.value() == 900 and panel.plot.loss_series.points[-1] == (6.0, 0.1)
    assert panel.plot.refit_from == 6.0  # the plot shades the refit from its first step on
    assert panel.status.text().startswith("folding in the validation images · refit epoch 0.5")  # not "epoch 648 → 0.5"
    panel.show_finished(False, "Training failed: boom.", "line 1\nTraceback\nValueError: boom")
    assert panel.log.isVisibleTo(panel) and "ValueError: boom" in panel.log.toPlainText()
    assert panel.progress.value() == 0 and panel.train_button.isEnabled()
    panel.set_running(True, "segmenter")
    assert not panel.log.isVisibleTo(panel) and not panel.plot.loss_series.points


def test_a_short_run_still_plots_its_validation_point(qtbot: QtBot) -> None:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.set_running(True, "localizer")
    for step in range(1, 4):  # under 30 s: no "validation" event during the run
        panel.show_event(
            train_event(
                {"event": "progress", "epoch": step, "step": step, "losses": {"total": 1.0 / step}, "elapsed": step}
            )
        )
    panel.show_event(train_event({"event": "done", "version": 1, "activated": True, "metric": 0.42}))
    assert panel.plot.metric_series.points == [(3.0, 0.42)]


def test_plot_paints_empty_single_and_flat_series(qtbot: QtBot) -> None:
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 160)
    assert not plot.grab().isNull()
    plot.add_loss(1, 0.5)
    plot.add_metric(1, 0.5)
    assert not plot.grab().isNull()
    for x in range(2, 10):
        plot.add_loss(x, 0.5)  # a flat curve
    plot.add_loss(10, math.nan)  # not a number: dropped
    assert len(plot.loss_series.points) == 9
    assert not plot.grab().isNull()


def test_auto_label_panel_progress(qtbot: QtBot) -> None:
    panel = AutoLabelPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.progress.isVisibleTo(panel)
    panel.set_running(True)
    assert panel.progress.isVisibleTo(panel) and panel.cancel_button.isEnabled()
    panel.show_progress(3, 12, 40.0)
    assert panel.progress.value() == 3 and panel.progress.maximum() == 12
    assert "3 of 12 images · about 40 s left" in panel.status.text()
    panel.show_finished("Auto-labelling cancelled after 3 of 12 images.", "", False)
    assert panel.all_button.isEnabled() and not panel.cancel_button.isEnabled()


def _versions_beside_plot(qtbot: QtBot, project, plugin: str):
    """The Versions list of ``plugin`` on ``project``, feeding a training panel's plot, as the window wires them."""
    from labeler.gui.panels.models import ModelListPanel

    models = ModelListPanel()
    panel = TrainingPanel()
    qtbot.addWidget(models)
    qtbot.addWidget(panel)
    models.scoresChanged.connect(panel.plot.set_versions)
    models.set_project(project, plugin)
    return models, panel


def test_plot_shows_the_validation_score_of_every_version(qtbot: QtBot, backend, tmp_path) -> None:
    """The Versions list hands the plot each version's score, oldest first, the active one marked."""
    from labeler.core.store import ModelVersion
    from labeler.gui.panels.plot import VersionScore

    project = backend.create(tmp_path / "p")
    for score in (0.4, 0.65, 0.5):
        project.add_model_version(
            ModelVersion(
                plugin="seg", settings={}, categories=(1,), checkpoint="m.safetensors", metrics={"miou": score}
            ),
            activate=score == 0.65,
        )
    _models, panel = _versions_beside_plot(qtbot, project, "seg")
    assert panel.plot.versions == [
        VersionScore(1, 0.4, False),
        VersionScore(2, 0.65, True),
        VersionScore(3, 0.5, False),
    ]
    panel.plot.resize(320, 260)
    assert not panel.plot.grab().isNull()
    panel.set_running(True, "seg")  # a new run clears its own curves, never the versions
    assert len(panel.plot.versions) == 3
    project.close()


def test_versions_name_their_ranking_metric_as_the_field_does(qtbot: QtBot, backend, tmp_path) -> None:
    """The detector ranks by ``map50``: the list and the plot say mAP@0.5, not the key."""
    import json

    from labeler.core.store import ModelVersion

    project = backend.create(tmp_path / "p")
    (project.root / "models").mkdir(exist_ok=True)
    (project.root / "models" / "d.json").write_text(json.dumps({"metric": "map50"}), encoding="utf-8")
    project.add_model_version(
        ModelVersion(
            plugin="detector",
            settings={},
            categories=(1,),
            checkpoint="models/d.safetensors",
            metrics={"map": 0.41, "map50": 0.83},
        ),
        activate=True,
    )
    models, panel = _versions_beside_plot(qtbot, project, "detector")
    assert panel.plot.metric_name == "mAP@0.5"
    assert [v.score for v in panel.plot.versions] == [0.83]  # ranked by map50, not the first number
    cell = models.table.item(0, 2)
    assert cell is not None and cell.text() == "mAP@0.5 0.830"
    assert "mAP@[.5:.95]: 0.4100" in cell.toolTip()
    project.close()
