"""The optimisation loop on its own: no store, items straight from plugin.prepare."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from learning_support import minimal_plugin

from labeler.learning.api import PluginError, default_settings
from labeler.learning.loop import fit, lr_factor, stack_examples
from labeler.learning.synthetic import make_samples


@pytest.fixture
def setup():
    plugin = minimal_plugin()
    settings = default_settings(plugin) | {"batch_size": 4}
    samples = make_samples(6, seed=1)
    items = [plugin.prepare(s, settings=settings) for s in samples]
    return plugin, settings, items


def test_fit_lowers_the_loss_and_reports_progress(setup):
    plugin, settings, items = setup
    model = plugin.build_model(num_classes=2, settings=settings)
    events = []
    result = fit(plugin, model, items, settings=settings, epochs=30, progress=events.append, progress_every=0.0)
    assert result.stopped_by == "epochs" and not result.cancelled
    assert result.steps == 30 * 2  # 6 items, batches of 4: 2 steps per epoch
    assert result.epochs == pytest.approx(30 * 8 / 6)
    assert not result.model.training
    first, last = events[0], events[-1]
    assert {"epoch", "step", "losses", "lr", "elapsed", "eta", "images_per_second", "event"} <= set(first)
    assert last["losses"]["ce"] < first["losses"]["ce"]
    assert last["eta"] == 0.0
    assert math.isfinite(last["images_per_second"]) and last["images_per_second"] > 0


def test_fit_is_reproducible_with_and_without_the_example_thread(setup):
    plugin, settings, items = setup
    weights = []
    for prefetch in (0, 2):
        torch.manual_seed(123)
        model = plugin.build_model(num_classes=2, settings=settings)
        fit(plugin, model, items, settings=settings, epochs=3, seed=7, prefetch=prefetch)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_time_budget_stops_the_run(setup):
    plugin, settings, items = setup
    model = plugin.build_model(num_classes=2, settings=settings)
    result = fit(plugin, model, items, settings=settings, time_budget=0.5)
    assert result.stopped_by == "time"
    assert 0.5 <= result.seconds < 3.0
    assert result.steps > 0


def test_cancel_returns_what_was_trained(setup):
    plugin, settings, items = setup
    model = plugin.build_model(num_classes=2, settings=settings)
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    result = fit(plugin, model, items, settings=settings, epochs=1000, should_stop=should_stop)
    assert result.cancelled and result.stopped_by == "cancel"
    assert result.steps == 5


def test_validate_runs_in_eval_mode_and_reaches_progress(setup):
    plugin, settings, items = setup
    model = plugin.build_model(num_classes=2, settings=settings)
    seen_modes = []

    def validate(m):
        seen_modes.append((m.training, torch.is_grad_enabled()))
        return {"miou": 0.5}

    events = []
    fit(
        plugin, model, items, settings=settings, epochs=4, validate=validate, validate_every=0.0, progress=events.append
    )
    assert seen_modes and all(mode == (False, False) for mode in seen_modes)
    assert any(e["event"] == "validation" and e["metric"] == 0.5 for e in events)


def test_learning_rate_warms_up_then_decays_to_zero():
    assert lr_factor(0.0) == pytest.approx(0.01)
    assert lr_factor(0.05) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.05)))
    assert lr_factor(0.5) == pytest.approx(0.5)
    assert lr_factor(1.0) == pytest.approx(0.0, abs=1e-12)
    values = [lr_factor(f) for f in np.linspace(0.05, 1.0, 50)]
    assert all(a >= b for a, b in itertools.pairwise(values))


class _Broken:
    """Wraps the minimal plugin and breaks one callback."""

    def __init__(self, inner, *, where: str, how: str) -> None:
        self._inner, self.where, self.how = inner, where, how
        self.name, self.task, self.metric, self.settings = "broken", inner.task, inner.metric, inner.settings

    def __getattr__(self, attr):
        return getattr(self._inner, attr)

    def example(self, item, *, augment, rng, settings):
        ex = self._inner.example(item, augment=augment, rng=rng, settings=settings)
        if self.where == "example":
            if self.how == "raise":
                raise ValueError("boom in example")
            if self.how == "shape":
                return ex | {"image": ex["image"][:, : 1 + int(rng.integers(5))]}
        return ex

    def losses(self, model, batch, *, settings):
        out = self._inner.losses(model, batch, settings=settings)
        if self.where == "losses":
            if self.how == "raise":
                raise RuntimeError("boom in losses")
            if self.how == "nan":
                return out | {"box": out["ce"] * float("nan")}
            if self.how == "vector":
                return {"ce": out["ce"].repeat(3)}
            if self.how == "none":
                return None
        return out


@pytest.mark.parametrize(
    ("where", "how", "reason"),
    [
        ("example", "raise", "example raised ValueError: boom in example"),
        ("example", "shape", "differ in shape"),
        ("losses", "raise", "losses raised RuntimeError: boom in losses"),
        ("losses", "nan", "NaN/inf loss 'box' at step 0"),
        ("losses", "vector", "loss 'ce' is not a scalar tensor"),
        ("losses", "none", "losses must return a non-empty dict"),
    ],
)
def test_misbehaving_plugin_is_named_with_the_reason(setup, where, how, reason):
    plugin, settings, items = setup
    broken = _Broken(plugin, where=where, how=how)
    model = plugin.build_model(num_classes=2, settings=settings)
    with pytest.raises(PluginError) as info:
        fit(broken, model, items, settings=settings, epochs=2)
    assert info.value.plugin == "broken"
    assert reason in str(info.value)


def test_stack_examples_converts_float64_and_checks_keys(setup):
    plugin, _, _ = setup
    out = stack_examples(plugin, [{"a": np.zeros(3)}, {"a": np.ones(3)}])
    assert out["a"].shape == (2, 3) and out["a"].dtype == np.float32
    with pytest.raises(PluginError, match="lacks key 'b'"):
        stack_examples(plugin, [{"a": np.zeros(3), "b": np.zeros(1)}, {"a": np.ones(3)}])


def test_fit_needs_a_stopping_rule(setup):
    plugin, settings, items = setup
    model = plugin.build_model(num_classes=2, settings=settings)
    with pytest.raises(ValueError, match="time_budget or a number of epochs"):
        fit(plugin, model, items, settings=settings)
