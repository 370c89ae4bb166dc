"""The training runner over a real (tiny) project: versions, activation, warm start, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from learning_support import minimal_plugin, synthetic_project

from labeler.core.store import Project
from labeler.learning.api import PluginError
from labeler.learning.dataset import split_key, validation_split
from labeler.learning.training import TrainingError, train


@pytest.fixture
def project(backend, tmp_path: Path):
    p = synthetic_project(backend, tmp_path / "proj", images=10, done=8)
    yield p
    p.close()


def _snapshot(project: Project) -> tuple:
    versions = [(v.id, v.active) for v in project.model_versions()]
    anns = [(a.id, a.state.value, a.model_version) for a in project.annotations()]
    files = sorted(p.name for p in project.models_dir.iterdir())
    return versions, anns, files


def test_validation_split_is_fixed_by_id_and_never_empty():
    train_ids, val_ids = validation_split(range(1, 101))
    assert 20 <= len(val_ids) <= 30 and not set(train_ids) & set(val_ids)
    below = {i for i in range(1, 101) if split_key(i) < 0.2}
    assert below <= set(val_ids)
    # more images later: the ones whose key puts them in validation keep their side
    _, val_more = validation_split(range(1, 201))
    assert below <= set(val_more)
    # a small project is measured on a fifth of its images, not on one by chance
    for n in (5, 10, 20, 24):
        assert len(validation_split(range(1, n + 1))[1]) >= round(0.2 * n)
    assert validation_split([5]) == ([5], [])
    for a in range(1, 30):
        t, v = validation_split([a, a + 1])
        assert len(t) == 1 and len(v) == 1


def test_train_adds_a_version_with_checkpoint_and_metadata(project):
    plugin = minimal_plugin()
    events = []
    result = train(project, plugin, epochs=40, progress=events.append)
    v = result.version
    assert v is not None and v.active and result.activated
    assert v.plugin == "minimal" and v.categories == (1, 2) and v.parent is None
    assert set(v.metrics) == {"miou"} and v.metrics["miou"] > 0.3
    weights = project.root / v.checkpoint
    assert weights.suffix == ".safetensors" and weights.parent == project.models_dir
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["plugin"] == "minimal" and meta["classes"] == [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]
    assert meta["metrics"] == v.metrics and meta["settings"]["size"] == 32
    assert sorted(meta["data"]["train_images"] + meta["data"]["validation_images"]) == list(range(1, 9))
    assert next(e["event"] for e in events) == "start" and events[-1]["event"] == "done"
    assert events[-1]["version"] == v.id and events[-1]["activated"] is True
    assert not list(project.models_dir.glob(".*tmp"))


def test_checkpoints_load_without_pickle(project, monkeypatch):
    import pickle

    import torch

    from labeler.learning.checkpoints import load_version

    plugin = minimal_plugin()
    v = train(project, plugin, epochs=2).version

    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_version(project, v, plugin)
    assert not loaded.model.training
    assert (project.root / v.checkpoint).read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle stream


def test_activation_rule_and_warm_start(project):
    plugin = minimal_plugin()
    first = train(project, plugin, epochs=25, seed=1).version
    assert first.active
    # a run that learns almost nothing does not replace a better active version
    weak = train(project, plugin, epochs=1, from_version=None, overrides={"lr": "0.000001"}, seed=2)
    assert weak.previous_metric == pytest.approx(first.metrics["miou"])
    assert not weak.activated and project.active_model_version("minimal").id == first.id
    assert weak.version.parent is None
    # unless asked
    forced = train(project, plugin, epochs=1, from_version=None, overrides={"lr": "0.000001"}, activate="always")
    assert forced.activated and project.active_model_version("minimal").id == forced.version.id
    # warm start from the active version by default, from a named one on request
    warm = train(project, plugin, epochs=1, activate="never")
    assert warm.version.parent == forced.version.id
    named = train(project, plugin, epochs=1, from_version=first.id, activate="never")
    assert named.version.parent == first.id


def test_warm_start_refused_when_classes_changed(project):
    plugin = minimal_plugin()
    first = train(project, plugin, epochs=2).version
    project.add_category("blue")
    result = train(project, plugin, epochs=2)
    assert result.version.parent is None and result.version.categories == (1, 2, 3)
    assert any(f"version {first.id}" in m and "from scratch" in m for m in result.messages)
    assert result.activated  # the old one no longer fits the project's classes


class _Failing:
    def __init__(self, inner, where):
        self._inner, self.where = inner, where
        self.name, self.task, self.metric, self.settings = "failing", inner.task, inner.metric, inner.settings

    def __getattr__(self, attr):
        return getattr(self._inner, attr)

    def prepare(self, sample, *, settings):
        if self.where == "prepare":
            raise KeyError("no such thing")
        return self._inner.prepare(sample, settings=settings)

    def losses(self, model, batch, *, settings):
        out = self._inner.losses(model, batch, settings=settings)
        if self.where == "nan":
            return {"ce": out["ce"] / 0.0 * 0.0}
        if self.where == "losses":
            raise RuntimeError("bad tensor")
        return out

    def evaluate(self, predictions, samples, *, settings):
        if self.where == "evaluate":
            return {"other": 1.0}
        return self._inner.evaluate(predictions, samples, settings=settings)

    def proposals(self, outputs, *, image_shape, classes, settings):
        p = self._inner.proposals(outputs, image_shape=image_shape, classes=classes, settings=settings)
        if self.where == "shape":
            from labeler.learning.api import Prediction, Proposal

            return Prediction(
                proposals=(Proposal(classes[0].id, "box", 0.5, box_xywh=(0, 0, 500, 5)),), uncertainty=0.1
            )
        return p


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("prepare", "prepare raised KeyError"),
        ("losses", "losses raised RuntimeError: bad tensor"),
        ("nan", "NaN/inf loss 'ce' at step 0"),
        ("evaluate", "did not return its ranking metric 'miou'"),
        ("shape", "lies outside the 32x32 image"),
    ],
)
def test_failing_plugin_leaves_project_and_active_model_alone(project, where, reason):
    good = train(project, minimal_plugin(), epochs=2).version
    before = _snapshot(project)
    with pytest.raises(PluginError) as info:
        train(project, _Failing(minimal_plugin(), where), epochs=2)
    assert info.value.plugin == "failing" and reason in str(info.value)
    assert _snapshot(project) == before
    assert project.active_model_version("minimal").id == good.id


def test_cancel_stores_nothing_unless_kept(project):
    plugin = minimal_plugin()
    events = []
    result = train(project, plugin, epochs=1000, should_stop=lambda: True, progress=events.append)
    assert result.cancelled and result.version is None and project.model_versions() == []
    assert [e["event"] for e in events] == ["cancelled"]  # stopped while reading the images
    steps = {"n": 0}
    inner = plugin.losses

    def counting(model, batch, *, settings):
        steps["n"] += 1
        return inner(model, batch, settings=settings)

    plugin.losses = counting
    kept = train(project, plugin, epochs=1000, should_stop=lambda: steps["n"] >= 3, keep_cancelled=True)
    assert kept.version is not None and kept.version.data["steps"] == 3
    assert kept.version.data["stopped_by"] == "cancel"


def test_nothing_to_train_on(backend, tmp_path):
    plugin = minimal_plugin()
    with (
        synthetic_project(backend, tmp_path / "p", images=3, done=0) as p,
        pytest.raises(TrainingError, match="no image is marked done"),
    ):
        train(p, plugin, epochs=1)
    with backend.create(tmp_path / "q") as q, pytest.raises(TrainingError, match="no categories"):
        train(q, plugin, epochs=1)


def test_skipped_images_are_counted(project):
    plugin = minimal_plugin()
    inner_prepare = plugin.prepare

    def picky(sample, *, settings):
        from labeler.learning.api import SkipImage

        if sample.image_id % 2:
            raise SkipImage("odd image id")
        return inner_prepare(sample, settings=settings)

    plugin.prepare = picky
    result = train(project, plugin, epochs=1)
    assert result.skipped == {"odd image id": 4}
    assert result.version.data["skipped"] == {"odd image id": 4}


def test_ignore_mask_reaches_the_plugin(project):
    from labeler.core.geometry import encode_mask

    plugin = minimal_plugin()
    seen = {}
    inner_prepare = plugin.prepare

    def spy(sample, *, settings):
        seen[sample.image_id] = sample.ignore_mask
        return inner_prepare(sample, settings=settings)

    plugin.prepare = spy
    mask = np.zeros((32, 32), bool)
    mask[:4] = True
    for image_id in range(1, 9):
        project.set_ignore_mask(image_id, encode_mask(mask))
    train(project, plugin, epochs=1)
    assert all(m is not None and m.sum() == 4 * 32 for m in seen.values())


def test_warm_start_keeps_the_parent_settings_unless_overridden(project):
    plugin = minimal_plugin()
    first = train(project, plugin, epochs=1, overrides={"width": "4"}).version
    warm = train(project, plugin, epochs=1, activate="never").version
    assert warm.parent == first.id and warm.settings["width"] == 4
    changed = train(project, plugin, epochs=1, overrides={"width": "6"}, activate="never")
    assert changed.version.parent is None and changed.version.settings["width"] == 6
    assert any("from scratch" in m for m in changed.messages)
    fresh = train(project, plugin, epochs=1, from_version=None, activate="never").version
    assert fresh.settings["width"] == 16
