"""Refit: the last part of a run folds the validation images in; the metrics stay honest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from learning_support import minimal_plugin, synthetic_project

from labeler.learning import refit as refit_module
from labeler.learning import training
from labeler.learning.checkpoints import load_selection, load_version
from labeler.learning.dataset import iter_labelled_images, prepare_all
from labeler.learning.evaluation import evaluate_version
from labeler.learning.predict import evaluate_samples
from labeler.learning.refit import REFIT_LR_FACTOR, REFIT_SHARE, PhaseRelay, refit_settings, split_budget
from labeler.learning.training import train

DONE = 8  # of which validation_split holds 2 out


@pytest.fixture
def project(backend, tmp_path: Path):
    p = synthetic_project(backend, tmp_path / "proj", images=10, done=DONE)
    yield p
    p.close()


@pytest.fixture
def fit_calls(monkeypatch):
    """Every call of the training loop, by either phase: items, peak lr, budget, validate given."""
    calls: list[dict] = []

    def recorder(real):
        def fit(plugin, model, items, *, settings, **kw):
            calls.append(
                {
                    "items": len(items),
                    "lr": settings["lr"],
                    "epochs": kw.get("epochs"),
                    "time_budget": kw.get("time_budget"),
                    "validates": kw.get("validate") is not None,
                }
            )
            return real(plugin, model, items, settings=settings, **kw)

        return fit

    monkeypatch.setattr(training, "fit", recorder(training.fit))
    monkeypatch.setattr(refit_module, "fit", recorder(refit_module.fit))
    return calls


def _validation_samples(project, version, plugin):
    loaded = load_version(project, version, plugin)
    ids = version.data["validation_images"]
    _, samples, _ = prepare_all(
        plugin, iter_labelled_images(project, ids, loaded.classes), settings=loaded.settings, keep_samples=True
    )
    assert [s.image_id for s in samples] == ids
    return samples


def _score(plugin, loaded, samples) -> float:
    return evaluate_samples(plugin, loaded.model, samples, settings=loaded.settings)["miou"]


def test_budget_split_and_settings():
    first, second = split_budget(time_budget=100.0, epochs=None)
    assert (first.time_budget, second.time_budget) == pytest.approx((100 * (1 - REFIT_SHARE), 100 * REFIT_SHARE))
    assert first.epochs is None and second.epochs is None
    first, second = split_budget(time_budget=None, epochs=10)
    assert first.epochs + second.epochs == pytest.approx(10) and second.epochs == pytest.approx(10 * REFIT_SHARE)
    settings = {"lr": 0.03, "width": 8}
    assert refit_settings(settings) == {"lr": pytest.approx(0.03 * REFIT_LR_FACTOR), "width": 8}
    assert settings == {"lr": 0.03, "width": 8}
    relayed = PhaseRelay("refit", 0.8, 0.2, step_offset=10, seconds_offset=40.0)(
        {"event": "progress", "fraction": 0.5, "step": 3, "elapsed": 5.0, "eta": 5.0}
    )
    assert relayed == {
        "event": "progress",
        "phase": "refit",
        "fraction": pytest.approx(0.9),
        "step": 13,
        "elapsed": 45.0,
        "eta": 5.0,
    }
    later = PhaseRelay("train", 0.0, 0.8, later_ratio=0.25)({"fraction": 0.5, "step": 3, "elapsed": 4.0, "eta": 4.0})
    assert later["fraction"] == pytest.approx(0.4) and later["eta"] == pytest.approx(4.0 + 8.0 * 0.25)


def test_refit_trains_on_every_done_image_and_keeps_honest_metrics(project, fit_calls, monkeypatch):
    plugin = minimal_plugin()
    written_before_row = []
    add_row = project.add_model_version

    def checking_add(version, **kw):
        selection = project.root / version.data["selection_checkpoint"]
        written_before_row.append(selection.is_file() and (project.root / version.checkpoint).is_file())
        return add_row(version, **kw)

    monkeypatch.setattr(project, "add_model_version", checking_add)
    events = []
    result = train(project, plugin, epochs=20, progress=events.append)
    v = result.version
    assert v is not None and v.active and written_before_row == [True]

    # phase 1 on the 6 training images with validation, phase 2 on all 8 at a lower lr, nothing validated
    assert fit_calls == [
        {
            "items": DONE - 2,
            "lr": 0.03,
            "epochs": pytest.approx(20 * (1 - REFIT_SHARE)),
            "time_budget": None,
            "validates": True,
        },
        {
            "items": DONE,
            "lr": pytest.approx(0.03 * REFIT_LR_FACTOR),
            "epochs": pytest.approx(20 * REFIT_SHARE),
            "time_budget": None,
            "validates": False,
        },
    ]
    assert v.settings["lr"] == 0.03  # the stored settings are the ones asked for
    refit = v.data["refit"]
    assert refit["images"] == DONE and refit["validation_images"] == 2 and refit["steps"] > 0
    assert refit["lr_factor"] == REFIT_LR_FACTOR and refit["stopped_by"] == "epochs"
    assert len(v.data["validation_images"]) == 2 and len(v.data["train_images"]) == DONE - 2
    assert v.images_trained_on == DONE  # what 'labeler models' and the versions panel show

    # the selection checkpoint: safetensors + json beside the final one, the weights the metrics are of
    selection_path = project.root / v.data["selection_checkpoint"]
    assert selection_path.name == Path(v.checkpoint).stem + "-selection.safetensors"
    assert selection_path.parent == project.models_dir
    meta = json.loads(selection_path.with_suffix(".json").read_text())
    assert meta["metrics"] == v.metrics and meta["selection_of"] == Path(v.checkpoint).name
    selection = load_selection(project, v, plugin)
    final = load_version(project, v, plugin)
    assert selection.selection and not final.selection and not selection.model.training
    samples = _validation_samples(project, v, plugin)
    assert _score(plugin, selection, samples) == pytest.approx(v.metrics["miou"])
    changed = [k for k, t in final.model.state_dict().items() if not t.equal(selection.model.state_dict()[k])]
    assert changed  # the refit moved the weights

    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and events[0]["refit"] is True
    assert kinds.index("evaluating") < kinds.index("refit") < len(kinds) - 1
    refit_event = events[kinds.index("refit")]
    assert refit_event["images"] == DONE and refit_event["validation_images"] == 2
    assert refit_event["epochs"] == pytest.approx(20 * REFIT_SHARE) and refit_event["seconds"] is None
    progress = [e for e in events if e["event"] in ("progress", "validation")]
    cut = kinds.index("refit")
    phases = [(i < cut, e["phase"]) for i, e in enumerate(events) if e["event"] in ("progress", "validation")]
    assert {p for early, p in phases if early} == {"train"} and {p for early, p in phases if not early} == {"refit"}
    # one run to the user: steps and fraction keep rising across the two phases
    steps = [e["step"] for e in progress]
    fractions = [e["fraction"] for e in progress]
    assert steps == sorted(steps) and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert steps[-1] == v.data["steps"] + refit["steps"]
    assert events[-1]["refit"] == refit and events[-1]["selection_checkpoint"] == v.data["selection_checkpoint"]


def test_no_refit_is_todays_behaviour(project, fit_calls):
    plugin = minimal_plugin()
    events = []
    result = train(project, plugin, epochs=20, refit=False, progress=events.append)
    v = result.version
    assert fit_calls == [{"items": DONE - 2, "lr": 0.03, "epochs": 20, "time_budget": None, "validates": True}]
    assert "refit" not in v.data and "selection_checkpoint" not in v.data
    assert v.images_trained_on == DONE - 2
    assert v.data["steps"] == 20 * math.ceil((DONE - 2) / 4)  # 20 passes over 6 items in batches of 4
    assert sorted(p.name for p in project.models_dir.iterdir()) == sorted(
        [Path(v.checkpoint).name, Path(v.checkpoint).with_suffix(".json").name]
    )
    assert "refit" not in [e["event"] for e in events] and events[0]["refit"] is False
    assert all("phase" not in e for e in events if e["event"] == "progress")
    assert not load_selection(project, v, plugin).selection
    samples = _validation_samples(project, v, plugin)
    assert _score(plugin, load_version(project, v, plugin), samples) == pytest.approx(v.metrics["miou"])


def test_without_validation_images_nothing_is_refit(backend, tmp_path, fit_calls):
    plugin = minimal_plugin()
    with synthetic_project(backend, tmp_path / "one", images=3, done=1) as project:
        v = train(project, plugin, epochs=4).version
        assert v.metrics == {} and "refit" not in v.data and "selection_checkpoint" not in v.data
        assert [c["epochs"] for c in fit_calls] == [4]


def _zero_weights(path: Path) -> None:
    """Overwrite a checkpoint with zeros of the same names and shapes (it then predicts background)."""
    from safetensors.torch import load_file, save_file

    save_file({k: t.zero_() for k, t in load_file(str(path)).items()}, str(path))


def test_the_active_version_is_compared_through_its_selection_checkpoint(project):
    plugin = minimal_plugin()
    first = train(project, plugin, epochs=20).version
    assert first.metrics["miou"] > 0.2
    # spoil its final weights: if those were measured, the active version would score 0
    _zero_weights(project.root / first.checkpoint)
    samples = _validation_samples(project, first, plugin)
    assert _score(plugin, load_version(project, first, plugin), samples) == 0.0

    second = train(project, plugin, epochs=1, from_version=None, activate="never")
    assert second.previous_metric == pytest.approx(first.metrics["miou"])
    assert second.version.data["previous_version"] == first.id

    # labeler eval on the validation images measures the selection checkpoint too, and says so
    report = evaluate_version(project, load_version(project, first, plugin), split="validation")
    assert report["weights"] == "selection" and report["metrics"]["miou"] == pytest.approx(first.metrics["miou"])
    everything = evaluate_version(project, load_version(project, first, plugin), split="all")
    assert everything["weights"] == "final" and everything["metrics"]["miou"] == 0.0


def test_a_version_without_refit_is_compared_on_its_final_weights(project):
    plugin = minimal_plugin()
    first = train(project, plugin, epochs=20, refit=False).version
    _zero_weights(project.root / first.checkpoint)
    second = train(project, plugin, epochs=1, from_version=None)
    assert second.previous_metric == 0.0 and second.activated is (second.metrics["miou"] > 0.0)


def test_cancel_during_the_refit_stores_nothing_unless_kept(project):
    plugin = minimal_plugin()
    stop = {"now": False}

    def progress(event):
        if event["event"] == "refit":
            stop["now"] = True

    events = []
    result = train(
        project, plugin, epochs=10, should_stop=lambda: stop["now"], progress=lambda e: (events.append(e), progress(e))
    )
    assert result.cancelled and result.version is None
    assert project.model_versions() == [] and not any(project.models_dir.iterdir())
    assert events[-1]["event"] == "cancelled" and "refit" in [e["event"] for e in events]

    stop["now"] = False
    kept = train(project, plugin, epochs=10, should_stop=lambda: stop["now"], progress=progress, keep_cancelled=True)
    v = kept.version
    assert kept.cancelled and v is not None
    assert v.data["stopped_by"] == "epochs" and v.data["refit"]["stopped_by"] == "cancel"
    assert v.data["refit"]["steps"] == 0
    selection = load_selection(project, v, plugin)
    assert selection.selection
    final = load_version(project, v, plugin)
    # stopped before its first step: the final weights are still those it was selected by
    assert all(t.equal(selection.model.state_dict()[k]) for k, t in final.model.state_dict().items())
