"""The training runner: a project's done images in, a new model version out.

:func:`train` reads the done images with their accepted labels, splits them (fixed, by image id;
see :mod:`labeler.learning.dataset`), lets the plugin prepare them (counting the images it skips,
by reason), warm-starts from the plugin's active version when its classes are the project's,
trains with :func:`labeler.learning.loop.fit`, measures the new model and the active one on the
validation images, then (by default) refits: trains on for the rest of the budget with the
validation images folded in (:mod:`labeler.learning.refit`). It writes the checkpoints
(:mod:`labeler.learning.checkpoints`) and, last, the version's row; the new version becomes active
only if it beats the active one on ``plugin.metric`` (or when asked). If anything fails before that
last write, the project and its active model are exactly as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from labeler.learning.api import Plugin, PluginError, resolve_settings
from labeler.learning.checkpoints import (
    CheckpointError,
    checkpoint_path,
    checkpoint_stem,
    classes_metadata,
    cpu_state,
    load_selection,
    load_weights,
    save_checkpoint,
    selection_stem,
    sweep_orphans,
    version_settings,
)
from labeler.learning.dataset import (
    UnreadableImage,
    iter_labelled_images,
    prepare_all,
    project_classes,
    validation_split,
)
from labeler.learning.loop import FitResult, fit
from labeler.learning.plugins import plugin_call
from labeler.learning.predict import evaluate_samples
from labeler.learning.refit import (
    Budget,
    PhaseRelay,
    refit_record,
    refit_relay,
    refit_settings,
    run_refit,
    split_budget,
    train_relay,
)
from labeler.learning.usable import refusal

if TYPE_CHECKING:
    from labeler.core.annotation import Category
    from labeler.core.store import ModelVersion, Project

Activate = Literal["better", "always", "never"]
Progress = Callable[[dict[str, Any]], None]


class TrainingError(Exception):
    """Training cannot start on this project (no done images, nothing usable); says why."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did. ``version`` is ``None`` when the run was cancelled (and not kept) or
    on ranks other than 0. ``previous_metric`` is the active version's score on today's validation
    images (``None`` if there was none)."""

    version: ModelVersion | None
    activated: bool
    metrics: dict[str, float]
    previous_metric: float | None
    cancelled: bool
    skipped: dict[str, int] = field(default_factory=dict)
    messages: tuple[str, ...] = ()


def _emit(progress: Progress | None, rank: int, event: str, **info: Any) -> None:
    if progress is not None and rank == 0:
        progress({"event": event, **info})


def _relayed(progress: Progress | None, rank: int, relay: PhaseRelay | None) -> Progress | None:
    """:func:`fit`'s progress callback: its events, through ``relay`` when the run has phases."""
    if progress is None:
        return None

    def forward(info: dict[str, Any]) -> None:
        info = relay(info) if relay is not None else info
        _emit(progress, rank, info.pop("event"), **info)

    return forward


def _barrier(world: int) -> None:
    """Wait for every rank (while rank 0 measures, the others wait here)."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _measure_active(
    project: Project,
    plugin: Plugin,
    active: ModelVersion | None,
    class_ids: tuple[int, ...],
    val_samples: list[Any],
    *,
    device: str,
    messages: list[str],
) -> float | None:
    """The active version's ``plugin.metric`` on ``val_samples``, measured on its selection
    checkpoint when it was refit (its final weights may have trained on these very images);
    ``None`` without validation images, with other classes, or when it cannot be loaded (said in
    ``messages``)."""
    if active is None or not val_samples or tuple(active.categories) != class_ids:
        return None
    try:
        loaded = load_selection(project, active, plugin, device=device)
        metrics = evaluate_samples(plugin, loaded.model, val_samples, settings=loaded.settings, device=device)
        return metrics[plugin.metric]
    except (PluginError, FileNotFoundError, CheckpointError) as exc:
        messages.append(f"the active version {active.id} could not be measured ({exc})")
        return None


def _should_activate(
    plugin: Plugin,
    activate: Activate,
    active: ModelVersion | None,
    class_ids: tuple[int, ...],
    metrics: Mapping[str, float],
    previous_metric: float | None,
    messages: list[str],
) -> bool:
    """Whether the new version becomes active (see :func:`train`'s ``activate``)."""
    if activate == "always":
        return True
    if activate == "never":
        return False
    if active is None or tuple(active.categories) != class_ids:
        return True
    if previous_metric is None:
        # nothing to compare against (no validation image, or the old one is broken)
        messages.append(
            f"the active version {active.id} could not be compared on validation images; the new version replaces it"
        )
        return True
    return plugin.metric in metrics and metrics[plugin.metric] > previous_metric


def _pick_parent(
    project: Project, plugin: Plugin, from_version: int | Literal["active"] | None, class_ids: tuple[int, ...]
) -> tuple[ModelVersion | None, str | None]:
    """The version to warm-start from, or ``None`` with the reason it trains from scratch."""
    if from_version is None:
        return None, None
    if from_version == "active":
        parent = project.active_model_version(plugin.name)
        if parent is None:
            return None, None
    else:
        parent = project.model_version(int(from_version))
        if parent.plugin != plugin.name:
            raise TrainingError(f"model version {parent.id} belongs to plugin {parent.plugin!r}, not {plugin.name!r}")
    if tuple(parent.categories) != class_ids:
        return None, (
            f"not warm-starting from version {parent.id}: it was trained for categories "
            f"{list(parent.categories)}, the project now has {list(class_ids)}; training from scratch"
        )
    return parent, None


@dataclass
class _Job:
    """What :func:`train` trains: the settings, the prepared items and the parent to start from."""

    settings: dict[str, Any]
    classes: tuple[Category, ...]
    class_ids: tuple[int, ...]
    train_ids: list[int]
    parent: ModelVersion | None
    items: list[Any]
    val_items: list[Any]
    val_samples: list[Any]
    skipped: dict[str, int]
    time_budget: float | None
    epochs: int | float | None
    refitting: bool
    cancelled: bool = False


@dataclass
class _Trained:
    """The trained network (``final``), its fits and its measurement (on rank 0)."""

    result: FitResult
    refitted: FitResult | None
    final: Any
    selection: dict[str, Any] | None
    metrics: dict[str, float]
    previous_metric: float | None
    active: ModelVersion | None
    cancelled: bool


def _prepare(
    project: Project,
    plugin: Plugin,
    *,
    overrides: Mapping[str, Any] | None,
    time_budget: float | None,
    epochs: int | float | None,
    from_version: int | Literal["active"] | None,
    should_stop: Callable[[], bool] | None,
    rank: int,
    world: int,
    messages: list[str],
) -> _Job:
    """Check the settings and the project, pick the parent, read and prepare the done images
    (``cancelled`` when told to stop while reading); raise :class:`TrainingError` when there is
    nothing to train on."""
    try:
        resolve_settings(plugin, overrides or {})  # unknown names and bad values fail before any work
    except ValueError as exc:
        raise TrainingError(str(exc)) from None

    classes = project_classes(project)
    if not classes:
        raise TrainingError("the project has no categories; add the classes to label first")
    class_ids = tuple(c.id for c in classes)
    done_ids = [r.id for r in project.images(done=True)]
    if not done_ids:
        raise TrainingError("no image is marked done yet; label a few images completely and mark them done")
    train_ids, val_ids = validation_split(done_ids)
    if rank == 0:
        swept = sweep_orphans(project)
        if swept:
            messages.append(
                f"removed {len(swept)} checkpoint file{'s' if len(swept) != 1 else ''} that no version "
                "uses (left by an interrupted run)"
            )

    parent, why_fresh = _pick_parent(project, plugin, from_version, class_ids)
    if why_fresh:
        messages.append(why_fresh)
    # a warm start keeps the parent's settings (its network's shape among them) unless overridden
    inherited = version_settings(plugin, parent.settings) if parent is not None else {}
    settings = resolve_settings(plugin, {**inherited, **dict(overrides or {})})
    if time_budget is None and epochs is None:
        if "epochs" in settings:
            epochs = settings["epochs"]
        else:
            time_budget = 60.0

    def until_stopped(samples: Iterator[Any]) -> Iterator[Any]:
        """Stop reading images on cancel (alone only: ranks must reach the loop together)."""
        for sample in samples:
            if should_stop is not None and world == 1 and should_stop():
                return
            yield sample

    unreadable: list[UnreadableImage] = []
    items, _, skipped = prepare_all(
        plugin,
        until_stopped(iter_labelled_images(project, train_ids, classes)),
        settings=settings,
        unreadable=unreadable,
    )
    val_items, val_samples, val_skipped = prepare_all(
        plugin,
        until_stopped(iter_labelled_images(project, val_ids, classes)),
        settings=settings,
        keep_samples=True,
        unreadable=unreadable,
    )
    for bad in unreadable[:5]:
        messages.append(f"left out image {bad.image_id}, which cannot be read: {bad.reason}")
    if len(unreadable) > 5:
        messages.append(f"left out {len(unreadable) - 5} more unreadable images")
    job = _Job(
        settings=settings,
        classes=classes,
        class_ids=class_ids,
        train_ids=list(train_ids),
        parent=parent,
        items=items,
        val_items=val_items,
        val_samples=val_samples,
        skipped=skipped,
        time_budget=time_budget,
        epochs=epochs,
        refitting=False,
    )
    if should_stop is not None and world == 1 and should_stop():
        job.cancelled = True
        return job
    for reason, n in val_skipped.items():
        skipped[reason] = skipped.get(reason, 0) + n
    # over all the done images (the skipped counts include the validation ones); none usable for
    # training proper is always refused
    usable = len(items) + len(val_samples) if items else 0
    why_not = refusal(
        plugin=plugin.name, task=str(getattr(plugin, "task", "")), usable=usable, total=len(done_ids), skipped=skipped
    )
    if why_not is not None:
        raise TrainingError(why_not)
    return job


def _build_model(project: Project, plugin: Plugin, job: _Job, *, seed: int, messages: list[str]) -> Any:
    """The network: the parent's weights on a warm start, fresh ones when those cannot be loaded."""
    import torch

    torch.manual_seed(seed)  # the same initial weights on every rank, and reproducible runs

    def build() -> Any:
        return plugin_call(
            plugin, "build_model", partial(plugin.build_model, num_classes=len(job.classes), settings=job.settings)
        )

    model = build()
    if job.parent is not None:
        try:
            load_weights(plugin, model, project.root / job.parent.checkpoint)
        except (PluginError, FileNotFoundError, CheckpointError) as exc:
            messages.append(f"not warm-starting from version {job.parent.id} ({exc}); training from scratch")
            job.parent = None
            model = build()
    return model


def _fit_phases(
    project: Project,
    plugin: Plugin,
    job: _Job,
    *,
    refit: bool,
    seed: int,
    device: str,
    progress: Progress | None,
    rank: int,
    world: int,
    should_stop: Callable[[], bool] | None,
    validate_every: float,
    keep_cancelled: bool,
    messages: list[str],
) -> _Trained | None:
    """Train on the training split, measure (rank 0), then refit with the validation images
    folded in; ``None`` when cancelled and not kept."""
    job.refitting = refit and bool(job.val_samples)
    if not job.refitting:
        job.val_items = []
    items, val_items, val_samples, settings = job.items, job.val_items, job.val_samples, job.settings
    time_budget, epochs = job.time_budget, job.epochs
    model = _build_model(project, plugin, job, seed=seed, messages=messages)
    parent = job.parent

    _emit(
        progress,
        rank,
        "start",
        plugin=plugin.name,
        settings=settings,
        train_images=len(items),
        validation_images=len(val_samples),
        skipped=job.skipped,
        parent=parent.id if parent else None,
        time_budget=time_budget,
        epochs=epochs,
        world_size=world,
        refit=job.refitting,
        messages=list(messages),
    )

    def validate(m: Any) -> dict[str, float]:
        return evaluate_samples(plugin, m, val_samples, settings=settings, device=device)

    # phase 1 (the whole run without a refit): the training split
    budget, refit_budget = (
        split_budget(time_budget=time_budget, epochs=epochs) if job.refitting else (Budget(time_budget, epochs), None)
    )
    relay = (
        train_relay(by_epochs=time_budget is None, train_items=len(items), all_items=len(items) + len(val_items))
        if job.refitting
        else None
    )
    began = time.monotonic()
    result = fit(
        plugin,
        model,
        items,
        settings=settings,
        time_budget=budget.time_budget,
        epochs=budget.epochs,
        seed=seed,
        device=device,
        progress=_relayed(progress, rank, relay),
        should_stop=should_stop,
        validate=validate if val_samples else None,
        validate_every=validate_every,
    )
    if result.cancelled and (rank != 0 or not keep_cancelled):
        _emit(progress, rank, "cancelled", steps=result.steps)
        return None

    # its measurement: the version's metrics, and the active version's on the same images
    metrics: dict[str, float] = {}
    previous_metric: float | None = None
    active: ModelVersion | None = None
    if rank == 0:
        _emit(progress, rank, "evaluating", validation_images=len(val_samples))
        metrics = validate(result.model) if val_samples else {}
        active = project.active_model_version(plugin.name)
        previous_metric = _measure_active(
            project, plugin, active, job.class_ids, val_samples, device=device, messages=messages
        )

    # phase 2: the refit, on every rank
    final, selection, refitted = result.model, None, None
    if refit_budget is not None and not result.cancelled:
        selection = cpu_state(result.model) if rank == 0 else None
        _barrier(world)
        _emit(
            progress,
            rank,
            "refit",
            images=len(items) + len(val_items),
            validation_images=len(val_items),
            seconds=refit_budget.time_budget,
            epochs=refit_budget.epochs,
            lr=refit_settings(settings)["lr"],
        )
        refitted = run_refit(
            plugin,
            result.model,
            items + val_items,
            settings=settings,
            budget=refit_budget,
            seed=seed,
            device=device,
            should_stop=should_stop,
            progress=_relayed(
                progress, rank, refit_relay(steps_before=result.steps, seconds_before=time.monotonic() - began)
            ),
        )
        final = refitted.model
        if refitted.cancelled and (rank != 0 or not keep_cancelled):
            _emit(progress, rank, "cancelled", steps=result.steps + refitted.steps)
            return None
    cancelled = result.cancelled or (refitted is not None and refitted.cancelled)
    return _Trained(
        result=result,
        refitted=refitted,
        final=final,
        selection=selection,
        metrics=metrics,
        previous_metric=previous_metric,
        active=active,
        cancelled=cancelled,
    )


def _store_version(
    project: Project,
    plugin: Plugin,
    job: _Job,
    trained: _Trained,
    *,
    activate: bool,
    started: float,
    world: int,
    progress: Progress | None,
    rank: int,
    messages: list[str],
) -> ModelVersion:
    """Write the checkpoints (the selection one first), then the version's row, last."""
    result, refitted, parent, settings = trained.result, trained.refitted, job.parent, job.settings
    items, val_items = job.items, job.val_items
    data: dict[str, Any] = {
        "train_images": list(job.train_ids),
        "validation_images": [s.image_id for s in job.val_samples],
        "skipped": job.skipped,
        "steps": result.steps,
        "epochs": result.epochs,
        "images": result.images,
        "seconds": result.seconds,
        "images_per_second": result.images_per_second,
        "stopped_by": result.stopped_by,
        "world_size": world,
        "final_losses": result.losses,
        "previous_metric": trained.previous_metric,
        "previous_version": trained.active.id if trained.active else None,
    }
    stem = checkpoint_stem(plugin.name)
    if refitted is not None:
        data["refit"] = refit_record(refitted, images=len(items) + len(val_items), validation_images=len(val_items))
        data["selection_checkpoint"] = (
            checkpoint_path(project.models_dir, selection_stem(stem)).relative_to(project.root).as_posix()
        )
    meta = {
        "plugin": plugin.name,
        "task": plugin.task,
        "metric": plugin.metric,
        "settings": settings,
        "classes": classes_metadata(job.classes),
        "parent": parent.id if parent else None,
        "data": data,
        "metrics": trained.metrics,
        "created": started,
    }
    if trained.selection is not None:  # written before the final checkpoint, and both before the row
        save_checkpoint(
            project.models_dir,
            selection_stem(stem),
            trained.selection,
            {**meta, "selection_of": checkpoint_path(project.models_dir, stem).name},
        )
    weights = save_checkpoint(project.models_dir, stem, trained.final, meta)
    from labeler.core.store import ModelVersion

    version = project.add_model_version(
        ModelVersion(
            plugin=plugin.name,
            settings=dict(settings),
            categories=job.class_ids,
            checkpoint=weights.relative_to(project.root).as_posix(),
            metrics=trained.metrics,
            data=data,
            parent=parent.id if parent else None,
            created=started,
        ),
        activate=activate,
    )
    metrics = trained.metrics
    _emit(
        progress,
        rank,
        "done",
        version=version.id,
        activated=activate,
        metrics=metrics,
        metric=metrics.get(plugin.metric),
        previous_metric=trained.previous_metric,
        messages=list(messages),
        skipped=job.skipped,
        seconds=time.time() - started,
        checkpoint=version.checkpoint,
        refit=data.get("refit"),
        selection_checkpoint=data.get("selection_checkpoint"),
    )
    return version


def train(
    project: Project,
    plugin: Plugin,
    *,
    overrides: Mapping[str, Any] | None = None,
    time_budget: float | None = None,
    epochs: int | float | None = None,
    from_version: int | Literal["active"] | None = "active",
    activate: Activate = "better",
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    validate_every: float = 30.0,
    keep_cancelled: bool = False,
    refit: bool = True,
) -> TrainResult:
    """Train ``plugin`` on the project's done images and store the result as a new model version.

    ``overrides`` are setting values (text from the command line is parsed by the setting's type);
    a warm start begins from the parent version's settings, a fresh run from the plugin's defaults.
    With neither ``time_budget`` (seconds) nor ``epochs``, trains for ``settings["epochs"]`` if the
    plugin has that setting, else 60 seconds. ``from_version``: ``"active"`` (warm start from the
    active version if its classes match), a version id, or ``None`` (from scratch).
    ``activate``: ``"better"`` (only if it beats the active version on ``plugin.metric``, measured
    now on the same validation images; a refit active version through its selection checkpoint),
    ``"always"`` or ``"never"``.

    ``refit`` (with validation images): the last :data:`~labeler.learning.refit.REFIT_SHARE` of
    the budget trains on the training and validation images together, at a lower learning rate;
    the version's metrics are those of the model before that, whose weights are kept as its
    selection checkpoint (see :mod:`labeler.learning.refit`). Without it, or without validation
    images, the whole budget trains on the training split and there is no selection checkpoint.

    ``progress`` gets dicts with ``event``: ``start``, ``progress``, ``validation`` (see
    :func:`labeler.learning.loop.fit`; with a refit, their ``fraction``, ``step``, ``elapsed`` and
    ``eta`` are of the whole run and ``phase`` is ``"train"`` or ``"refit"``), ``evaluating``,
    ``refit`` (before the refit phase: ``images``, ``validation_images``, ``seconds`` or
    ``epochs`` of it, ``lr``), ``done`` and ``cancelled``. Under ``torch.distributed`` every rank
    trains on its shard in both phases; rank 0 alone evaluates and writes the version.
    """
    from labeler.learning.loop import _distributed

    _, rank, world = _distributed()
    started = time.time()
    messages: list[str] = []
    job = _prepare(
        project,
        plugin,
        overrides=overrides,
        time_budget=time_budget,
        epochs=epochs,
        from_version=from_version,
        should_stop=should_stop,
        rank=rank,
        world=world,
        messages=messages,
    )
    version: ModelVersion | None = None
    activated = False
    metrics: dict[str, float] = {}
    previous_metric: float | None = None
    cancelled = job.cancelled
    if job.cancelled:
        _emit(progress, rank, "cancelled", steps=0)
    else:
        trained = _fit_phases(
            project,
            plugin,
            job,
            seed=seed,
            device=device,
            progress=progress,
            rank=rank,
            world=world,
            should_stop=should_stop,
            validate_every=validate_every,
            keep_cancelled=keep_cancelled,
            refit=refit,
            messages=messages,
        )
        cancelled = trained is None or trained.cancelled
        if trained is not None and rank == 0:
            activated = _should_activate(
                plugin, activate, trained.active, job.class_ids, trained.metrics, trained.previous_metric, messages
            )
            version = _store_version(
                project,
                plugin,
                job,
                trained,
                activate=activated,
                started=started,
                world=world,
                progress=progress,
                rank=rank,
                messages=messages,
            )
            metrics, previous_metric = trained.metrics, trained.previous_metric
    return TrainResult(
        version=version,
        activated=activated,
        metrics=metrics,
        previous_metric=previous_metric,
        cancelled=cancelled,
        skipped=job.skipped,
        messages=tuple(messages),
    )
