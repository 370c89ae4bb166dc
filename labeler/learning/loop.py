"""The optimisation loop: items in, trained module out. No store, no files; usable on its own.

:func:`fit` is what ``labeler train`` runs, and what a plugin's author can call from a notebook or
a benchmark script with a list of items from ``plugin.prepare``::

    items = [plugin.prepare(sample, settings=settings) for sample in samples]
    model = plugin.build_model(num_classes=2, settings=settings)
    result = fit(plugin, model, items, settings=settings, time_budget=60.0)

Each step samples ``settings["batch_size"]`` items (default 8) from shuffled passes over ``items``
(an *epoch* is one pass), turns each into an example with ``plugin.example(..., augment=True)``
(in a background thread, so that augmentation overlaps the network's compute), stacks the arrays
of each key into one tensor (``float64`` becomes ``float32``), asks ``plugin.losses`` for named
scalar losses, sums them, and takes one AdamW step (``settings["lr"]``, default 1e-3;
``settings["weight_decay"]``, default 1e-4; optional ``settings["grad_clip"]``, a max gradient
norm). The learning rate warms up linearly over the first 5 % of the run and then follows a cosine
down to about 0 at the end, where "the run" is the time budget (wall-clock seconds) or
``epochs`` passes, whichever ends first.

Distributed: when ``torch.distributed`` is initialised (``torchrun``), the module is wrapped in
``DistributedDataParallel``, each rank trains on its own shard of ``items``, and the ranks agree on
every step (one small all-reduce) whether to stop, how far the run is, and whether any rank hit an
error, so a time budget or a plugin failure never leaves a rank waiting for the others. Plugins must
therefore only *call* the module they are given in ``losses`` (``model(x)``): under DDP it is the
wrapper, which has no attributes of the plugin's network.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from labeler.learning.api import Plugin, PluginError
from labeler.learning.events import eta_seconds
from labeler.learning.plugins import plugin_call

if TYPE_CHECKING:
    import torch

WARMUP_FRACTION = 0.05
"""Share of the run over which the learning rate rises linearly from 1 % to its full value."""

DEFAULT_LR = 1e-3
"""Peak learning rate when the settings have no ``lr``."""


class StopReason(IntEnum):
    """Why :func:`fit` stops. Ranks agree on the largest value (an all-reduce of ``value``), so a
    cancel wins over the time budget, which wins over the number of epochs."""

    RUNNING = 0
    EPOCHS = 1
    TIME = 2
    CANCEL = 3

    @property
    def label(self) -> str:
        """``"epochs"``, ``"time"`` or ``"cancel"``: what :attr:`FitResult.stopped_by` holds."""
        return self.name.lower()


@dataclass
class FitResult:
    """What :func:`fit` did.

    ``model`` is the trained module (never the DDP wrapper), in eval mode. ``epochs`` counts passes
    over this rank's items (fractional). ``images`` is the number of examples this rank trained on;
    ``images_per_second`` is over all ranks. ``seconds`` is wall-clock time of the loop.
    ``stopped_by`` is ``"time"``, ``"epochs"`` or ``"cancel"``. ``losses`` are the means over the
    last reporting interval, by name (plus ``"total"``). ``metrics`` is the last ``validate`` result
    (empty if it never ran).
    """

    model: Any
    steps: int
    epochs: float
    images: int
    seconds: float
    images_per_second: float
    cancelled: bool
    stopped_by: str
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def _distributed() -> tuple[bool, int, int]:
    """``(initialised, rank, world_size)`` of ``torch.distributed``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def stack_examples(plugin: Plugin, examples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack a list of examples key by key into batch arrays; shape or key mismatches are the
    plugin's error (named)."""
    if not examples:
        raise PluginError(plugin.name, "no examples to stack")
    first = examples[0]
    if not isinstance(first, Mapping) or not first:
        raise PluginError(plugin.name, f"example must return a non-empty dict of arrays, got {type(first).__name__}")
    keys = list(first.keys())
    out: dict[str, np.ndarray] = {}
    for key in keys:
        arrays = []
        for i, ex in enumerate(examples):
            if not isinstance(ex, Mapping) or key not in ex:
                raise PluginError(plugin.name, f"example {i} lacks key {key!r} that the first example has")
            arrays.append(np.asarray(ex[key]))
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise PluginError(plugin.name, f"example arrays {key!r} differ in shape within a batch: {sorted(shapes)}")
        stacked = np.stack(arrays)
        if stacked.dtype == np.float64:
            stacked = stacked.astype(np.float32)
        if stacked.dtype == object:
            raise PluginError(plugin.name, f"example array {key!r} is not numeric")
        out[key] = stacked
    return out


class _BatchMaker:
    """Makes batches of stacked examples, in a background thread when ``prefetch > 0``.

    The sequence of batches depends only on the seed (one producer makes them in order), so a run
    is reproducible with or without the thread.
    """

    def __init__(
        self,
        plugin: Plugin,
        items: Sequence[Any],
        *,
        batch_size: int,
        settings: Mapping[str, Any],
        seed: int,
        rank: int,
        prefetch: int,
    ) -> None:
        self.plugin = plugin
        self.items = items
        self.batch_size = batch_size
        self.settings = settings
        sequence = np.random.SeedSequence([seed, rank])
        order_seed, aug_seed = sequence.spawn(2)
        self.order_rng = np.random.default_rng(order_seed)
        self.aug_rng = np.random.default_rng(aug_seed)
        self.order: list[int] = []
        self.prefetch = prefetch
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if prefetch > 0:
            self._thread = threading.Thread(target=self._produce, name="labeler-examples", daemon=True)
            self._thread.start()

    def _indices(self) -> list[int]:
        picked: list[int] = []
        while len(picked) < self.batch_size:
            if not self.order:
                self.order = list(self.order_rng.permutation(len(self.items)))
            picked.append(int(self.order.pop()))
        return picked

    def _make(self) -> dict[str, np.ndarray]:
        examples = []
        for index in self._indices():
            item = self.items[index]
            examples.append(
                plugin_call(
                    self.plugin,
                    "example",
                    partial(self.plugin.example, item, augment=True, rng=self.aug_rng, settings=self.settings),
                )
            )
        return stack_examples(self.plugin, examples)

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                message: tuple[str, Any] = ("batch", self._make())
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                message = ("error", exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(message, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if message[0] == "error":
                return

    def next(self) -> dict[str, np.ndarray]:
        if self._thread is None:
            return self._make()
        while True:
            try:
                kind, value = self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the example thread ended unexpectedly") from None
                continue
            if kind == "error":
                raise value
            batch: dict[str, np.ndarray] = value
            return batch

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


def lr_factor(fraction: float) -> float:
    """Learning-rate multiplier at ``fraction`` (0..1) of the run: linear warm-up, then cosine."""
    fraction = min(max(fraction, 0.0), 1.0)
    warm = min(1.0, 0.01 + fraction / WARMUP_FRACTION)
    return warm * 0.5 * (1.0 + math.cos(math.pi * fraction))


def compute_threads(world: int = 1) -> int:
    """Threads for torch's CPU kernels: ``$LABELER_THREADS`` if set, else the cores this process may
    use divided among the ranks on this machine (``LOCAL_WORLD_SIZE``)."""
    env = os.environ.get("LABELER_THREADS")
    if env:
        return max(1, int(env))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world if world > 1 else 1))
    return max(1, cores // max(1, local))


def _set_threads(world: int) -> None:
    import torch

    torch.set_num_threads(compute_threads(world))


def fit(
    plugin: Plugin,
    model: torch.nn.Module,
    items: Sequence[Any],
    *,
    settings: Mapping[str, Any],
    time_budget: float | None = None,
    epochs: int | float | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    validate_every: float = 30.0,
    progress_every: float = 0.5,
    prefetch: int = 2,
) -> FitResult:
    """Train ``model`` on ``items`` (what ``plugin.prepare`` returned) and return it with a summary.

    Stops at ``time_budget`` wall-clock seconds, after ``epochs`` passes over the items, or when
    ``should_stop()`` turns true (then ``cancelled=True`` and the model trained so far is returned).
    At least one of ``time_budget`` and ``epochs`` is required.

    ``progress`` receives a dict about every ``progress_every`` seconds (and after the last step):
    ``event`` (``"progress"`` or ``"validation"``), ``epoch`` (float), ``step``, ``fraction`` (of the
    run done, 0..1, what the learning-rate schedule follows), ``losses`` (mean per
    name since the last call, plus ``"total"``), ``lr``, ``elapsed`` and ``eta`` (seconds),
    ``images_per_second`` (all ranks) and, when ``validate`` has run, ``metrics`` (its result) and
    ``metric`` (``metrics[plugin.metric]`` if present). ``validate(model)`` runs every
    ``validate_every`` seconds (or less often, so that validating takes at most about a tenth of the
    time) on rank 0 with the bare model in eval mode under ``no_grad``.

    Raises :class:`PluginError` naming the plugin if it raises, returns arrays that do not stack,
    returns something other than named scalar losses, or a loss is NaN/inf (``"NaN/inf loss 'box'
    at step 12"``).
    """
    if time_budget is None and epochs is None:
        raise ValueError("fit needs a time_budget or a number of epochs")
    if time_budget is not None and time_budget <= 0:
        raise ValueError("time_budget must be positive (seconds)")
    if epochs is not None and epochs <= 0:
        raise ValueError("epochs must be positive")
    if not items:
        raise ValueError("no training items")
    run = _FitRun(
        plugin,
        model,
        items,
        settings=settings,
        time_budget=time_budget,
        epochs=epochs,
        seed=seed,
        device=device,
        progress=progress,
        validate=validate,
        validate_every=validate_every,
        progress_every=progress_every,
        prefetch=prefetch,
    )
    try:
        while True:
            reason, fraction, batch_np = run.next_batch(should_stop)
            if reason is not StopReason.RUNNING:
                break
            run.set_learning_rate(fraction)
            total, named = run.losses(batch_np)
            run.optimise(total, named)
            run.validate_or_report()
    finally:
        run.maker.close()
    return run.finish(reason)


class _FitRun:
    """The state of one :func:`fit` and its steps: what every rank does, in the same order."""

    def __init__(
        self,
        plugin: Plugin,
        model: torch.nn.Module,
        items: Sequence[Any],
        *,
        settings: Mapping[str, Any],
        time_budget: float | None,
        epochs: int | float | None,
        seed: int,
        device: str,
        progress: Callable[[dict[str, Any]], None] | None,
        validate: Callable[[torch.nn.Module], dict[str, float]] | None,
        validate_every: float,
        progress_every: float,
        prefetch: int,
    ) -> None:
        import torch

        self.plugin, self.settings, self.device = plugin, settings, device
        self.time_budget, self.progress, self.validate = time_budget, progress, validate
        self.validate_every, self.progress_every = validate_every, progress_every
        self.distributed, self.rank, self.world = _distributed()
        _set_threads(self.world)
        torch.manual_seed(seed + self.rank)

        self.shard: Sequence[Any] = items
        if self.distributed:
            self.shard = list(items)[self.rank :: self.world] or list(items)
        self.batch_size = max(1, int(settings.get("batch_size", 8)))
        steps_per_epoch = max(1, math.ceil(len(self.shard) / self.batch_size))
        self.total_steps = None if epochs is None else max(1, math.ceil(epochs * steps_per_epoch))

        model.to(device)
        model.train()
        self.bare = model
        self.trained: Any = model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [torch.device(device).index or 0] if device.startswith("cuda") else None
            self.trained = DistributedDataParallel(model, device_ids=device_ids)
        self.params = [p for p in self.bare.parameters() if p.requires_grad]
        if not self.params:
            raise PluginError(plugin.name, "the model has no trainable parameters")
        self.base_lr = float(settings.get("lr", DEFAULT_LR))
        self.optimizer = torch.optim.AdamW(
            self.params, lr=self.base_lr, weight_decay=float(settings.get("weight_decay", 1e-4))
        )
        self.grad_clip = settings.get("grad_clip")

        self.maker = _BatchMaker(
            plugin,
            self.shard,
            batch_size=self.batch_size,
            settings=settings,
            seed=seed,
            rank=self.rank,
            prefetch=prefetch,
        )
        self.start = time.monotonic()
        self.last_report = self.start
        self.last_validation = self.start
        self.validation_interval = validate_every
        self.sums: dict[str, float] = {}
        self.count = 0
        self.step = 0
        self.images = 0
        self.metrics: dict[str, float] = {}
        self.last_losses: dict[str, float] = {}
        self.reported_step = -1

    def fraction_now(self) -> float:
        """How far the run is (0..1): the larger of the time and the steps used."""
        parts = []
        if self.time_budget is not None:
            parts.append((time.monotonic() - self.start) / self.time_budget)
        if self.total_steps is not None:
            parts.append(self.step / self.total_steps)
        return min(1.0, max(parts))

    def agree(self, *flags: float) -> list[float]:
        """Max of each flag over all ranks (identity when not distributed)."""
        if not self.distributed:
            return list(flags)
        import torch
        import torch.distributed as dist

        # NCCL reduces CUDA tensors only; gloo CPU ones
        on = self.device if self.device.startswith("cuda") else "cpu"
        tensor = torch.tensor(flags, dtype=torch.float64, device=on)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def _raise_if_failed(self, failed: float, error: BaseException | None) -> None:
        if failed:
            if error is not None:
                raise error
            raise PluginError(self.plugin.name, "failed on another rank (see its log)")

    def stop_reason(self, should_stop: Callable[[], bool] | None) -> StopReason:
        """Why this rank would stop now (``RUNNING`` when it would not)."""
        if should_stop is not None and should_stop():
            return StopReason.CANCEL
        if self.time_budget is not None and time.monotonic() - self.start >= self.time_budget and self.step > 0:
            return StopReason.TIME
        if self.total_steps is not None and self.step >= self.total_steps:
            return StopReason.EPOCHS
        return StopReason.RUNNING

    def next_batch(self, should_stop: Callable[[], bool] | None) -> tuple[StopReason, float, dict[str, np.ndarray]]:
        """The ranks agree whether to stop (and why), how far the run is, and whether any failed;
        then the next batch (empty when stopping)."""
        frac = self.fraction_now()
        reason = self.stop_reason(should_stop)
        batch_np: dict[str, np.ndarray] = {}
        error: BaseException | None = None
        if reason is StopReason.RUNNING:
            try:
                batch_np = self.maker.next()
            except BaseException as exc:  # noqa: BLE001 - shared with the other ranks first
                error = exc
        agreed, frac, failed = self.agree(float(reason.value), frac, 1.0 if error else 0.0)
        self._raise_if_failed(failed, error)
        return StopReason(int(agreed)), frac, batch_np

    def set_learning_rate(self, fraction: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * lr_factor(fraction)

    def losses(self, batch_np: Mapping[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
        """The plugin's losses on a batch, checked: their sum (a tensor) and each by name (floats)."""
        import torch

        plugin, step = self.plugin, self.step
        batch = {k: torch.from_numpy(v).to(self.device) for k, v in batch_np.items()}
        total: Any = None
        named: dict[str, float] = {}
        error: BaseException | None = None
        try:
            losses = plugin_call(plugin, "losses", partial(plugin.losses, self.trained, batch, settings=self.settings))
            if not isinstance(losses, Mapping) or not losses:
                raise PluginError(
                    plugin.name, f"losses must return a non-empty dict of scalar tensors, got {type(losses).__name__}"
                )
            for name, value in losses.items():
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise PluginError(plugin.name, f"loss {name!r} is not a scalar tensor")
                scalar = float(value.detach())
                if not math.isfinite(scalar):
                    raise PluginError(plugin.name, f"NaN/inf loss {name!r} at step {step}")
                named[str(name)] = scalar
                total = value.reshape(()) if total is None else total + value.reshape(())
            if not total.requires_grad:
                raise PluginError(plugin.name, "the losses do not depend on the model's parameters")
        except BaseException as exc:  # noqa: BLE001 - shared with the other ranks first
            error = exc
        (failed,) = self.agree(1.0 if error else 0.0)
        self._raise_if_failed(failed, error)
        return total, named

    def optimise(self, total: Any, named: Mapping[str, float]) -> None:
        """One optimiser step on ``total``; the named losses are summed for the next report."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, float(self.grad_clip))
        self.optimizer.step()
        self.step += 1
        self.images += self.batch_size
        self.count += 1
        for name, amount in named.items():
            self.sums[name] = self.sums.get(name, 0.0) + amount
        self.sums["total"] = self.sums.get("total", 0.0) + sum(named.values())

    def validate_or_report(self) -> None:
        """Validate when it is time (on rank 0, at most about a tenth of the run), else report
        progress when it is time."""
        import torch

        now = time.monotonic()
        if self.validate is not None and now - self.last_validation >= self.validation_interval:
            if self.rank == 0:
                self.bare.eval()
                with torch.no_grad():
                    self.metrics = dict(self.validate(self.bare))
                self.bare.train()
            self.last_validation = time.monotonic()
            # validation never takes more than about a tenth of the run
            self.validation_interval = max(self.validate_every, 9.0 * (self.last_validation - now))
            self.report("validation")
        elif now - self.last_report >= self.progress_every:
            self.report("progress")

    def _eta(self, elapsed: float, frac: float, final: bool) -> float:
        if final:
            return 0.0
        if self.time_budget is not None and self.total_steps is None:
            return max(0.0, self.time_budget - elapsed)
        eta = eta_seconds(elapsed=elapsed, fraction=frac)
        if self.time_budget is not None:
            eta = min(eta, max(0.0, self.time_budget - elapsed))
        return eta

    def report(self, event: str, final: bool = False) -> None:
        """Mean losses since the last report; the ``progress`` callback (rank 0) gets the dict
        described in :func:`fit`."""
        self.reported_step = self.step
        if self.count:
            self.last_losses = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        self.last_report = time.monotonic()
        if self.progress is None or self.rank != 0:
            return
        elapsed = self.last_report - self.start
        frac = self.fraction_now()
        info: dict[str, Any] = {
            "event": event,
            "epoch": self.images / len(self.shard),
            "step": self.step,
            "fraction": 1.0 if final else frac,
            "losses": dict(self.last_losses),
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed": elapsed,
            "eta": self._eta(elapsed, frac, final),
            "images_per_second": self.images * self.world / elapsed if elapsed > 0 else 0.0,
        }
        if self.metrics:
            info["metrics"] = dict(self.metrics)
            if self.plugin.metric in self.metrics:
                info["metric"] = self.metrics[self.plugin.metric]
        self.progress(info)

    def finish(self, reason: StopReason) -> FitResult:
        """The last report (unless the last step was reported already) and the result."""
        seconds = time.monotonic() - self.start
        if self.count or self.step == 0 or self.reported_step != self.step:
            self.report("progress", final=True)
        self.bare.eval()
        return FitResult(
            model=self.bare,
            steps=self.step,
            epochs=self.images / len(self.shard),
            images=self.images,
            seconds=seconds,
            images_per_second=self.images * self.world / seconds if seconds > 0 else 0.0,
            cancelled=reason is StopReason.CANCEL,
            stopped_by=reason.label,
            losses=dict(self.last_losses),
            metrics=self.metrics,
        )
