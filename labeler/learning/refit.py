"""Refit: the last part of a training run also learns from the validation images.

The runner (:func:`labeler.learning.training.train`) holds a fifth of the done images out to judge
each new version. On a small project that costs the model a large share of what it could learn
from, so when there are validation images a run has two phases within the budget it was given:

1. **train**: ``1 - REFIT_SHARE`` of the budget (seconds, or epochs) on the training split. This
   model is measured on the validation images, which it never saw: those are the version's
   ``metrics``, and its weights are kept as the version's *selection checkpoint*, what later
   versions are compared against (:func:`labeler.learning.checkpoints.load_selection`).
2. **refit**: the remaining ``REFIT_SHARE`` continues the same model on the training and the
   validation images together, with a fresh warm-up and cosine schedule whose peak learning rate is
   ``REFIT_LR_FACTOR`` times ``settings["lr"]``, and nothing to validate on. These final weights
   are the version's checkpoint, the ones auto-labelling uses.

The version's ``data`` keeps the first phase's figures at its top level (``steps``, ``epochs``,
``seconds``, ...: the run on the training split) and the refit's under ``data["refit"]``
(:func:`refit_record`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labeler.learning.api import Plugin
from labeler.learning.loop import DEFAULT_LR, FitResult, fit

if TYPE_CHECKING:
    import torch

REFIT_SHARE = 0.2
"""Share of a run's budget (its seconds, or its epochs) spent on the refit phase."""

REFIT_LR_FACTOR = 0.3
"""The refit's peak learning rate as a multiple of ``settings["lr"]``: it continues a model that has
already converged on most of the data, which a full-size restart would partly undo."""


@dataclass(frozen=True)
class Budget:
    """How long one phase trains: ``time_budget`` wall-clock seconds and/or ``epochs`` passes over
    that phase's items; whichever ends first (as in :func:`labeler.learning.loop.fit`)."""

    time_budget: float | None
    epochs: float | None


def split_budget(
    *, time_budget: float | None, epochs: float | None, share: float = REFIT_SHARE
) -> tuple[Budget, Budget]:
    """``(train phase, refit phase)``: the run's budget split ``1 - share`` to ``share``."""

    def part(value: float | None, fraction: float) -> float | None:
        return None if value is None else value * fraction

    return (
        Budget(part(time_budget, 1.0 - share), part(epochs, 1.0 - share)),
        Budget(part(time_budget, share), part(epochs, share)),
    )


def refit_settings(settings: Mapping[str, Any], *, factor: float = REFIT_LR_FACTOR) -> dict[str, Any]:
    """A copy of ``settings`` with ``lr`` (the peak learning rate; :data:`DEFAULT_LR` if absent)
    times ``factor``; ``settings`` itself is unchanged."""
    return {**settings, "lr": float(settings.get("lr", DEFAULT_LR)) * factor}


@dataclass(frozen=True)
class PhaseRelay:
    """Turns one phase's :func:`fit` progress into progress of the whole run.

    ``fraction`` becomes ``start + span * fraction``; ``step`` and ``elapsed`` (seconds) are counted
    from the run's beginning (``step_offset``, ``seconds_offset``); ``eta`` adds the expected seconds
    of the later phases, ``later_ratio`` seconds per second of this phase; ``phase`` is added.
    """

    phase: str
    start: float
    span: float
    later_ratio: float = 0.0
    step_offset: int = 0
    seconds_offset: float = 0.0

    def __call__(self, info: Mapping[str, Any]) -> dict[str, Any]:
        out = {**info, "phase": self.phase}
        if isinstance(info.get("fraction"), (int, float)):
            out["fraction"] = self.start + self.span * float(info["fraction"])
        if isinstance(info.get("step"), int):
            out["step"] = info["step"] + self.step_offset
        elapsed, eta = info.get("elapsed"), info.get("eta")
        if isinstance(elapsed, (int, float)):
            out["elapsed"] = elapsed + self.seconds_offset
            if isinstance(eta, (int, float)) and math.isfinite(eta):
                out["eta"] = eta + (elapsed + eta) * self.later_ratio
        return out


def train_relay(*, by_epochs: bool, train_items: int, all_items: int, share: float = REFIT_SHARE) -> PhaseRelay:
    """The relay of the first phase of a run that refits. A time budget gives the refit ``share /
    (1 - share)`` seconds per second of this phase; an epoch budget that many passes over
    ``all_items`` instead of ``train_items``, so proportionally longer."""
    ratio = share / (1.0 - share) * (all_items / max(1, train_items) if by_epochs else 1.0)
    return PhaseRelay("train", 0.0, 1.0 - share, later_ratio=ratio)


def refit_relay(*, steps_before: int, seconds_before: float, share: float = REFIT_SHARE) -> PhaseRelay:
    """The relay of the refit phase, after ``steps_before`` steps and ``seconds_before`` seconds."""
    return PhaseRelay("refit", 1.0 - share, share, step_offset=steps_before, seconds_offset=seconds_before)


def run_refit(
    plugin: Plugin,
    model: torch.nn.Module,
    items: Sequence[Any],
    *,
    settings: Mapping[str, Any],
    budget: Budget,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """The refit phase: continue training ``model`` on ``items`` (training and validation items)
    for ``budget`` at the lower learning rate of :func:`refit_settings`, validating nothing.
    Under ``torch.distributed`` every rank must call it (``fit`` shards the items by rank)."""
    return fit(
        plugin,
        model,
        items,
        settings=refit_settings(settings),
        time_budget=budget.time_budget,
        epochs=budget.epochs,
        seed=seed,
        device=device,
        progress=progress,
        should_stop=should_stop,
        validate=None,
    )


def refit_record(result: FitResult, *, images: int, validation_images: int) -> dict[str, Any]:
    """What ``data["refit"]`` of a version holds: ``images`` (items the refit trained on, training
    and validation), ``validation_images`` (of them), ``seconds`` (wall clock), ``steps``,
    ``epochs`` (passes over those items), ``stopped_by``, ``lr_factor`` and ``final_losses``."""
    return {
        "images": images,
        "validation_images": validation_images,
        "seconds": result.seconds,
        "steps": result.steps,
        "epochs": result.epochs,
        "stopped_by": result.stopped_by,
        "lr_factor": REFIT_LR_FACTOR,
        "final_losses": dict(result.losses),
    }
