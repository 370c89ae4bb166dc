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
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from labeler.learning.api import Plugin, PluginError
from labeler.learning.plugins import plugin_call

if TYPE_CHECKING:
    import torch

WARMUP_FRACTION = 0.05
"""Share of the run over which the learning rate rises linearly from 1 % to its full value."""

DEFAULT_LR = 1e-3
"""Peak learning rate when the settings have no ``lr``."""


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
            raise PluginError(
                plugin.name, f"example arrays {key!r} differ in shape within a batch: {sorted(shapes)}"
            )
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
    import torch

    if time_budget is None and epochs is None:
        raise ValueError("fit needs a time_budget or a number of epochs")
    if time_budget is not None and time_budget <= 0:
        raise ValueError("time_budget must be positive (seconds)")
    if epochs is not None and epochs <= 0:
        raise ValueError("epochs must be positive")
    if not items:
        raise ValueError("no training items")
    distributed, rank, world = _distributed()
    _set_threads(world)
    torch.manual_seed(seed + rank)

    shard: Sequence[Any] = items
    if distributed:
        shard = list(items)[rank::world] or list(items)
    batch_size = max(1, int(settings.get("batch_size", 8)))
    steps_per_epoch = max(1, math.ceil(len(shard) / batch_size))
    total_steps = None if epochs is None else max(1, math.ceil(epochs * steps_per_epoch))

    model.to(device)
    model.train()
    bare = model
    trained: Any = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.device(device).index or 0] if device.startswith("cuda") else None
        trained = DistributedDataParallel(model, device_ids=device_ids)
    params = [p for p in bare.parameters() if p.requires_grad]
    if not params:
        raise PluginError(plugin.name, "the model has no trainable parameters")
    base_lr = float(settings.get("lr", DEFAULT_LR))
    optimizer = torch.optim.AdamW(params, lr=base_lr, weight_decay=float(settings.get("weight_decay", 1e-4)))
    grad_clip = settings.get("grad_clip")

    maker = _BatchMaker(
        plugin, shard, batch_size=batch_size, settings=settings, seed=seed, rank=rank, prefetch=prefetch
    )
    start = time.monotonic()
    last_report = start
    last_validation = start
    validation_interval = validate_every
    sums: dict[str, float] = {}
    count = 0
    step = 0
    images = 0
    stopped_by = "epochs"
    metrics: dict[str, float] = {}
    last_losses: dict[str, float] = {}

    def fraction_now() -> float:
        parts = []
        if time_budget is not None:
            parts.append((time.monotonic() - start) / time_budget)
        if total_steps is not None:
            parts.append(step / total_steps)
        return min(1.0, max(parts))

    def agree(*flags: float) -> list[float]:
        """Max of each flag over all ranks (identity when not distributed)."""
        if not distributed:
            return list(flags)
        import torch.distributed as dist

        # NCCL reduces CUDA tensors only; gloo CPU ones
        on = device if device.startswith("cuda") else "cpu"
        tensor = torch.tensor(flags, dtype=torch.float64, device=on)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    reported_step = -1

    def report(event: str, final: bool = False) -> None:
        nonlocal sums, count, last_report, last_losses, reported_step
        reported_step = step
        if count:
            last_losses = {k: v / count for k, v in sums.items()}
        sums, count = {}, 0
        last_report = time.monotonic()
        if progress is None or rank != 0:
            return
        elapsed = last_report - start
        frac = fraction_now()
        if final:
            eta = 0.0
        elif time_budget is not None and total_steps is None:
            eta = max(0.0, time_budget - elapsed)
        else:
            eta = elapsed / frac * (1.0 - frac) if frac > 0 else float("nan")
            if time_budget is not None:
                eta = min(eta, max(0.0, time_budget - elapsed))
        info: dict[str, Any] = {
            "event": event,
            "epoch": images / len(shard),
            "step": step,
            "fraction": 1.0 if final else frac,
            "losses": dict(last_losses),
            "lr": optimizer.param_groups[0]["lr"],
            "elapsed": elapsed,
            "eta": eta,
            "images_per_second": images * world / elapsed if elapsed > 0 else 0.0,
        }
        if metrics:
            info["metrics"] = dict(metrics)
            if plugin.metric in metrics:
                info["metric"] = metrics[plugin.metric]
        progress(info)

    try:
        while True:
            frac = fraction_now()
            stop_reason = 0.0
            if should_stop is not None and should_stop():
                stop_reason = 3.0
            elif time_budget is not None and time.monotonic() - start >= time_budget and step > 0:
                stop_reason = 2.0
            elif total_steps is not None and step >= total_steps:
                stop_reason = 1.0
            batch_np: dict[str, np.ndarray] | None = None
            error: BaseException | None = None
            if stop_reason == 0.0:
                try:
                    batch_np = maker.next()
                except BaseException as exc:  # noqa: BLE001 - shared with the other ranks first
                    error = exc
            stop_reason, frac, failed = agree(stop_reason, frac, 1.0 if error else 0.0)
            if failed:
                if error is not None:
                    raise error
                raise PluginError(plugin.name, "failed on another rank (see its log)")
            if stop_reason:
                stopped_by = {1.0: "epochs", 2.0: "time", 3.0: "cancel"}[stop_reason]
                break
            assert batch_np is not None
            for group in optimizer.param_groups:
                group["lr"] = base_lr * lr_factor(frac)
            batch = {k: torch.from_numpy(v).to(device) for k, v in batch_np.items()}

            total: Any = None
            named: dict[str, float] = {}
            try:
                losses = plugin_call(plugin, "losses", partial(plugin.losses, trained, batch, settings=settings))
                if not isinstance(losses, Mapping) or not losses:
                    raise PluginError(plugin.name, f"losses must return a non-empty dict of scalar tensors, "
                                                   f"got {type(losses).__name__}")
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
            (failed,) = agree(1.0 if error else 0.0)
            if failed:
                if error is not None:
                    raise error
                raise PluginError(plugin.name, "failed on another rank (see its log)")

            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, float(grad_clip))
            optimizer.step()
            step += 1
            images += batch_size
            count += 1
            for name, amount in named.items():
                sums[name] = sums.get(name, 0.0) + amount
            sums["total"] = sums.get("total", 0.0) + sum(named.values())

            now = time.monotonic()
            if validate is not None and now - last_validation >= validation_interval:
                if rank == 0:
                    bare.eval()
                    with torch.no_grad():
                        metrics = dict(validate(bare))
                    bare.train()
                last_validation = time.monotonic()
                # validation never takes more than about a tenth of the run
                validation_interval = max(validate_every, 9.0 * (last_validation - now))
                report("validation")
            elif now - last_report >= progress_every:
                report("progress")
    finally:
        maker.close()

    seconds = time.monotonic() - start
    if count or step == 0 or reported_step != step:
        report("progress", final=True)
    bare.eval()
    return FitResult(
        model=bare,
        steps=step,
        epochs=images / len(shard),
        images=images,
        seconds=seconds,
        images_per_second=images * world / seconds if seconds > 0 else 0.0,
        cancelled=stopped_by == "cancel",
        stopped_by=stopped_by,
        losses=dict(last_losses),
        metrics=metrics,
    )
