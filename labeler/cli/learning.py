"""``labeler plugins | train | auto-label | eval | models``: the learning verbs.

``train`` and ``auto-label`` with ``--progress json`` print one JSON object per line on stdout
(UTF-8, no NaN: numbers that are not finite become ``null``), which is what the GUI parses when
it runs them as child processes (``sys.executable -m labeler train ... --progress json``). The
events are the dataclasses of :mod:`labeler.learning.events`, written and read only through that
module; every line has ``"v"`` (the protocol version), ``"job"`` (``train`` or ``auto-label``) and
``"event"``:

``labeler train``
  - ``start``: ``plugin``, ``settings`` (resolved), ``train_images``, ``validation_images``,
    ``skipped`` ({reason: count}), ``parent`` (warm-start version id or null), ``time_budget``
    (seconds or null), ``epochs`` (or null), ``world_size``, ``refit`` (bool: the run ends with a
    refit phase), ``messages`` (list of text);
  - ``progress``: ``epoch`` (float, passes over this phase's images), ``step``, ``fraction`` (of
    the run done, 0..1), ``losses``
    ({name: mean since the last line, plus "total"}), ``lr``, ``elapsed`` and ``eta`` (seconds),
    ``images_per_second``; and ``metric`` / ``metrics`` once a validation has run; in a run that
    refits also ``phase`` (``"train"``, then ``"refit"``), with ``step``, ``fraction``,
    ``elapsed`` and ``eta`` counted over both phases;
  - ``validation``: as ``progress``, right after a validation pass (``metric`` = the plugin's
    ranking metric, ``metrics`` = all of them);
  - ``evaluating``: ``validation_images``: training on the training images ended, the
    measurement (the new version's metrics and the active version's score) runs;
  - ``refit``: ``images`` (training plus validation images), ``validation_images``, ``seconds``
    (the refit's time budget, or null) or ``epochs`` (or null), ``lr`` (its peak learning rate):
    the last part of the run trains on the validation images too (see ``--no-refit``);
  - ``done``: ``version`` (new id), ``activated`` (bool), ``metric``, ``metrics``,
    ``previous_metric`` (the active version on the same images, or null), ``checkpoint``,
    ``messages``, ``skipped``, ``seconds``, ``refit`` (what the refit did: ``images``,
    ``seconds``, ``steps``, ... or null) and ``selection_checkpoint`` (the weights the metrics
    are of, when it refit; else null);
  - ``cancelled``: ``steps``: stopped by SIGTERM/SIGINT; nothing was written;
  - ``error``: ``message`` (one line), ``plugin`` (when a plugin is at fault). Exit code 2.

``labeler auto-label``
  - ``start``: ``version``, ``plugin``, ``total``;
  - ``progress``: ``done``, ``total``, ``image_id``, ``proposals``, ``uncertainty``,
    ``images_per_second``, ``eta``, ``error`` (text for an unreadable image, else null);
  - ``done``: ``images``, ``proposals``, ``failed`` ({image id: reason}), ``seconds``, ``cancelled``;
  - ``error``: as for train.

SIGTERM or a first Ctrl+C asks a run to stop cleanly (train: nothing is written unless
``--keep-on-cancel``; auto-label: the images finished so far keep their proposals); a second
Ctrl+C interrupts at once, which also leaves the project consistent. A run still going
:data:`STOP_GRACE_S` seconds after SIGTERM (a worker stuck in I/O) says so and ends itself (exit 143).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from labeler.cli.progress import ProgressBar
from labeler.cli.where import add_image_root, open_project


def add_parsers(sub: Any) -> None:
    from labeler.learning.refit import REFIT_SHARE  # light: no torch

    p = sub.add_parser(
        "plugins",
        help="installed model plugins, their settings and defaults",
        description="List the model plugins found under the entry-point group labeler.plugins.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_plugins)

    p = sub.add_parser(
        "train",
        help="train a plugin on the done images; adds a model version",
        description="Train a plugin on the project's done images and store a new model version. "
        "It becomes active only if it beats the active one on the validation images.",
    )
    p.add_argument("project")
    add_image_root(p)
    p.add_argument("--plugin", required=True, help="plugin name (see 'labeler plugins')")
    p.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help="a plugin setting (repeatable)"
    )
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="seconds of training (reading the images before and measuring after come on top); "
        "without it or --epochs: the plugin's 'epochs' setting if it has one, else 60 s",
    )
    p.add_argument("--epochs", type=float, metavar="N", help="train for N passes over the training images")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--from-version",
        type=int,
        metavar="ID",
        help="warm-start from this version (default: the active one, if it predicts the same categories)",
    )
    start.add_argument("--fresh", action="store_true", help="train from scratch")
    p.add_argument(
        "--activate",
        choices=("better", "always", "never"),
        default="better",
        help="when the new version becomes active (default: if it beats the active one)",
    )
    p.add_argument(
        "--progress",
        choices=("json", "bar", "none"),
        default=None,
        help="json: one JSON object per line on stdout (for the GUI); bar: a progress bar (default on a terminal)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--validate-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="validate during training this often (default 30)",
    )
    p.add_argument(
        "--keep-on-cancel",
        action="store_true",
        help="on SIGTERM/Ctrl+C store what was trained so far (never activated unless better)",
    )
    p.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help=f"never train on the validation images. By default the last {round(100 * REFIT_SHARE)}%% "
        "of the budget continues training on all done images, validation ones included (which "
        "matters on small projects); the version's metrics, and the comparison with the active "
        "version, come from the model before that",
    )
    p.set_defaults(run=run_train)

    p = sub.add_parser(
        "auto-label",
        help="write a model version's proposals onto images",
        description="Run a model version (the active one by default) and store its proposals. "
        "Accepted and human labels are never changed.",
    )
    p.add_argument("project")
    add_image_root(p)
    p.add_argument("--plugin", required=True)
    p.add_argument("--model-version", type=int, metavar="ID", help="default: the plugin's active version")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--undone", action="store_true", help="images not marked done (the default)")
    which.add_argument("--all", action="store_true", help="every image")
    which.add_argument("--image", type=int, action="append", metavar="ID", help="this image (repeatable)")
    p.add_argument("--shard", metavar="K/N", help="only shard K of N (1 <= K <= N), split by image id")
    p.add_argument("--progress", choices=("json", "bar", "none"), default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(run=run_auto_label)

    p = sub.add_parser(
        "eval",
        help="metrics of a model version",
        description="Measure a model version on the validation images (or all done images). "
        "A version refit on its validation images is measured there through its selection "
        "checkpoint, the weights from before the refit.",
    )
    p.add_argument("project")
    add_image_root(p)
    p.add_argument("--plugin", required=True)
    p.add_argument("--model-version", type=int, metavar="ID", help="default: the plugin's active version")
    p.add_argument(
        "--split",
        choices=("validation", "all"),
        default="validation",
        help="the fixed validation split of the done images (default), or every done image",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=run_eval)

    p = sub.add_parser(
        "models",
        help="model versions with their metrics",
        description="List the project's model versions; --activate switches the active one.",
    )
    p.add_argument("project")
    add_image_root(p)
    p.add_argument("--plugin", help="only this plugin's versions")
    p.add_argument("--activate", type=int, metavar="ID", help="make this version the active one of its plugin")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_models)


# ---- shared helpers -------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit_event(event: Any) -> None:
    """Print one event of :mod:`labeler.learning.events` as a JSON line (what the window reads)."""
    from labeler.learning.events import to_line

    sys.stdout.write(to_line(event) + "\n")
    sys.stdout.flush()


def emit_train_report(info: dict[str, Any]) -> None:
    """The ``progress`` callback of :func:`~labeler.learning.training.train` in ``--progress json``."""
    from labeler.learning.events import train_event

    emit_event(train_event(info))


def emit_error(exc: Exception, *, job: str) -> None:
    from labeler.learning.api import PluginError
    from labeler.learning.events import JobError

    emit_event(
        JobError(
            message=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            plugin=exc.plugin if isinstance(exc, PluginError) else None,
            job=job,
        )
    )


def _device(text: str) -> str:
    from labeler.cli import CliError
    from labeler.learning.device import DeviceError, resolve_device

    try:
        return resolve_device(text)
    except DeviceError as exc:
        raise CliError(str(exc)) from None


def _progress_mode(requested: str | None) -> str:
    if requested is not None:
        return requested
    return "bar" if sys.stderr.isatty() else "none"


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    from labeler.cli import CliError

    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"--set takes KEY=VALUE, not {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


STOP_GRACE_S = 20.0
"""After SIGTERM or a first Ctrl+C, seconds a run has to stop cleanly; a process still running
then (a worker stuck in I/O, say) says so on stderr and ends at once (exit 143), which leaves the
project as a ``kill -9`` does: consistent, with what was committed."""


def _hard_exit(grace: float) -> None:
    """End the process now: the clean stop did not finish within ``grace`` seconds."""
    try:
        sys.stderr.write(
            f"labeler: still running {grace:g} s after being asked to stop (a read or a worker "
            "is stuck); ending now. The project keeps what was committed before.\n"
        )
        sys.stderr.flush()
    finally:
        os._exit(143)


class _StopFlag:
    """SIGTERM or the first SIGINT set the flag (and start the :data:`STOP_GRACE_S` watchdog);
    a second SIGINT interrupts at once."""

    def __init__(self, *, grace: float | None = None) -> None:
        self.stopped = False
        self._old: dict[int, Any] = {}
        self._grace = STOP_GRACE_S if grace is None else grace
        self._watchdog: Any = None

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stopped and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stopped = True
        if self._watchdog is None:
            import threading

            self._watchdog = threading.Timer(self._grace, _hard_exit, args=(self._grace,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __call__(self) -> bool:
        return self.stopped


# ---- plugins --------------------------------------------------------------------------------


def run_plugins(args: argparse.Namespace) -> int:
    from labeler.learning.plugins import discover, load_errors

    plugins = discover()
    errors = load_errors()
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": p.name,
                            "task": p.task,
                            "metric": p.metric,
                            "class": f"{type(p).__module__}.{type(p).__qualname__}",
                            "settings": [
                                {
                                    "name": s.name,
                                    "default": s.default,
                                    "help": s.help,
                                    "choices": list(s.choices) if s.choices is not None else None,
                                }
                                for s in p.settings
                            ],
                        }
                        for p in plugins.values()
                    ],
                    "errors": [{"name": e.name, "value": e.value, "reason": e.reason} for e in errors],
                },
                indent=2,
            )
        )
        return 0
    if not plugins:
        print("no plugins installed (they register under the entry-point group 'labeler.plugins')")
    for plugin in plugins.values():
        print(f"{plugin.name}  ({plugin.task}; versions ranked by {plugin.metric})")
        for s in plugin.settings:
            choices = f" [{'|'.join(map(str, s.choices))}]" if s.choices else ""
            print(f"    {s.name}={s.default}{choices}  {s.help}")
    for e in errors:
        print(f"{e.name}: could not be loaded from {e.value}: {e.reason}", file=sys.stderr)
    return 0


# ---- train ----------------------------------------------------------------------------------


class _TrainBar:
    """One redrawn line on stderr: fraction done, step, loss, metric, eta."""

    def __init__(self) -> None:
        self.metric: float | None = None
        self.drawn = False

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            skipped = sum(event["skipped"].values())
            sys.stderr.write(
                f"training {event['plugin']} on {event['train_images']} images "
                f"({event['validation_images']} for validation, {skipped} skipped)\n"
            )
            for message in event["messages"]:
                sys.stderr.write(f"  {message}\n")
        elif kind in ("progress", "validation"):
            if event.get("metric") is not None:
                self.metric = event["metric"]
            from labeler.learning.events import fraction_from_eta

            elapsed, eta = event["elapsed"], event["eta"]
            frac = fraction_from_eta(elapsed=elapsed, eta=eta) or 0.0
            filled = int(30 * frac)
            metric = f" metric {self.metric:.3f}" if self.metric is not None else ""
            eta_text = f"{eta:4.0f}s" if eta is not None and math.isfinite(eta) else "   ?"
            sys.stderr.write(
                f"\r[{'#' * filled}{'-' * (30 - filled)}] step {event['step']} "
                f"loss {event['losses'].get('total', float('nan')):.4f}{metric} eta {eta_text}  "
            )
            sys.stderr.flush()
            self.drawn = True
        elif kind == "evaluating" and self.drawn:
            sys.stderr.write("\n")
            self.drawn = False
        elif kind == "refit":
            sys.stderr.write(f"{_refit_text(event)}\n")


def _refit_text(event: dict[str, Any]) -> str:
    """One line for the ``refit`` event."""
    n = event["validation_images"]
    length = f"{event['seconds']:.0f} s" if event.get("seconds") is not None else f"{event['epochs']:g} epochs"
    return f"folding in the {n} validation image{'s' if n != 1 else ''} for the last {length}"


def _report_train(event: dict[str, Any]) -> None:
    """Plain text for a non-terminal without --progress: start, refit and end only."""
    if event["event"] == "start":
        print(
            f"training {event['plugin']} on {event['train_images']} images ({event['validation_images']} for "
            f"validation, skipped: {event['skipped'] or 'none'})",
            flush=True,
        )
        for message in event["messages"]:
            print(f"  {message}", flush=True)
    elif event["event"] == "refit":
        print(_refit_text(event), flush=True)


def _reporting_errors(args: argparse.Namespace, job: str, run: Callable[[argparse.Namespace, str], int]) -> int:
    """``run(args, mode)``; with ``--progress json`` a failure is also sent as the job's error event."""
    mode = _progress_mode(args.progress)
    try:
        return run(args, mode)
    except Exception as exc:
        if mode == "json":
            emit_error(exc, job=job)
        raise


def run_train(args: argparse.Namespace) -> int:
    return _reporting_errors(args, "train", _train)


def _train(args: argparse.Namespace, mode: str) -> int:
    from labeler.cli import CliError
    from labeler.learning.plugins import get_plugin
    from labeler.learning.training import TrainingError, train

    if args.time_budget is not None and args.time_budget <= 0:
        raise CliError("--time-budget must be a positive number of seconds")
    if args.epochs is not None and args.epochs <= 0:
        raise CliError("--epochs must be positive")
    overrides = _parse_sets(args.settings)
    plugin = get_plugin(args.plugin)
    from labeler.learning.device import (
        close_distributed,
        init_distributed,
        launched_distributed,
    )

    device = _device(args.device)
    distributed = launched_distributed()
    if distributed:
        device = init_distributed(device)
    rank = int(os.environ.get("RANK", "0")) if distributed else 0
    from_version: Any = None if args.fresh else (args.from_version if args.from_version is not None else "active")

    if mode == "json":
        progress: Any = emit_train_report
    elif mode == "bar":
        progress = _TrainBar()
    else:
        progress = _report_train
    try:
        with open_project(args) as project, _StopFlag() as stop:
            from labeler.core.access import require

            require(project, "owner", "train a model version", table="model_versions", privilege="INSERT")
            try:
                result = train(
                    project,
                    plugin,
                    overrides=overrides,
                    time_budget=args.time_budget,
                    epochs=args.epochs,
                    from_version=from_version,
                    activate=args.activate,
                    seed=args.seed,
                    device=device,
                    progress=progress if rank == 0 else None,
                    should_stop=stop,
                    validate_every=args.validate_every,
                    keep_cancelled=args.keep_on_cancel,
                    refit=args.refit,
                )
            except (TrainingError, ValueError) as exc:
                raise CliError(str(exc)) from None
    finally:
        if distributed:
            close_distributed()
    if rank != 0:
        return 0
    if result.version is None:
        if mode != "json":
            print("training cancelled; nothing was stored", file=sys.stderr)
        return 130
    if mode != "json":
        v = result.version
        metric = result.metrics.get(plugin.metric)
        shown = f"{plugin.metric} {metric:.4f}" if metric is not None else "no validation images"
        before = f" (active was {result.previous_metric:.4f})" if result.previous_metric is not None else ""
        state = "now active" if result.activated else "not activated"
        print(f"model version {v.id} ({plugin.name}): {shown}{before}; {state}; {v.checkpoint}")
        for message in result.messages:
            print(f"  {message}")
    return 0


# ---- auto-label -----------------------------------------------------------------------------


def run_auto_label(args: argparse.Namespace) -> int:
    return _reporting_errors(args, "auto-label", _auto_label)


def _auto_label(args: argparse.Namespace, mode: str) -> int:
    from labeler.cli import CliError
    from labeler.learning import events
    from labeler.learning.autolabel import (
        auto_label,
        in_shard,
        load_model,
        parse_shard,
        select_images,
    )

    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    with open_project(args) as project:
        if args.image:
            for image_id in args.image:
                project.image(image_id)
            ids = [i for i in args.image if in_shard(i, shard)]
        else:
            ids = select_images(project, scope="all" if args.all else "undone", shard=shard)
        loaded = load_model(project, args.plugin, version_id=args.model_version, device=_device(args.device))
        if mode == "json":
            emit_event(events.AutoLabelStart(version=loaded.version.id, plugin=args.plugin, total=len(ids)))
        bar = ProgressBar(f"auto-label {args.plugin} v{loaded.version.id}", enabled=mode == "bar")
        last = [0.0]

        def progress(step: Any) -> None:
            if mode == "json":
                now = time.monotonic()
                if now - last[0] >= 0.25 or step.done == step.total or step.error:
                    last[0] = now
                    emit_event(
                        events.AutoLabelProgress(
                            done=step.done,
                            total=step.total,
                            image_id=step.image_id,
                            proposals=step.proposals,
                            uncertainty=step.uncertainty,
                            images_per_second=step.images_per_second,
                            eta=events.eta_seconds(elapsed=step.elapsed, fraction=step.done / max(1, step.total)),
                            error=step.error,
                        )
                    )
            else:
                bar(step.done, step.total)

        with _StopFlag() as stop:
            result = auto_label(project, loaded, ids, progress=progress, should_stop=stop)
        bar.close()
    if mode == "json":
        emit_event(
            events.AutoLabelDone(
                images=result.images,
                proposals=result.proposals,
                failed={str(k): v for k, v in result.failed.items()},
                seconds=result.seconds,
                cancelled=result.cancelled,
            )
        )
    else:
        rate = result.images / result.seconds if result.seconds > 0 else 0.0
        print(
            f"auto-labelled {result.images} images with version {result.version_id}: {result.proposals} "
            f"proposals, {rate:.1f} images/s{' (cancelled)' if result.cancelled else ''}"
        )
        for image_id, reason in result.failed.items():
            print(f"  image {image_id} skipped: {reason}", file=sys.stderr)
    return 130 if result.cancelled else 0


# ---- eval -----------------------------------------------------------------------------------


def run_eval(args: argparse.Namespace) -> int:
    from labeler.learning.autolabel import load_model
    from labeler.learning.evaluation import evaluate_version

    with open_project(args) as project:
        # on the validation images a refit version is measured through its selection checkpoint
        loaded = load_model(
            project,
            args.plugin,
            version_id=args.model_version,
            device=_device(args.device),
            selection=args.split == "validation",
        )
        report = evaluate_version(project, loaded, split=args.split)
    if args.json:
        print(json.dumps(_clean(report), indent=2))
        return 0
    reasons = ", ".join(f"{n} {why}" for why, n in report["skipped_reasons"].items())
    print(
        f"model version {report['version']} ({report['plugin']}) on {report['images']} {args.split} images"
        f"{' (' + str(report['skipped']) + ' skipped: ' + reasons + ')' if report['skipped'] else ''}:"
    )
    if report["weights"] == "selection":
        print(
            "  (its final weights also trained on these images, so this measures its selection checkpoint, "
            "the weights from before the refit)"
        )
    for key, value in report["metrics"].items():
        print(f"  {key:20s} {value:.4f}")
    return 0


# ---- models ---------------------------------------------------------------------------------


def run_models(args: argparse.Namespace) -> int:

    with open_project(args) as project:
        if args.activate is not None:
            version = project.model_version(args.activate)
            project.activate_model_version(version.id or 0)
            if not args.json:
                print(f"model version {version.id} is now the active {version.plugin} model")
        versions = project.model_versions(args.plugin)
    if args.json:
        print(
            json.dumps(
                _clean(
                    [
                        {
                            "id": v.id,
                            "plugin": v.plugin,
                            "active": v.active,
                            "parent": v.parent,
                            "created": v.created,
                            "metrics": v.metrics,
                            "categories": list(v.categories),
                            "checkpoint": v.checkpoint,
                            "settings": v.settings,
                            "train_images": len(v.data.get("train_images", [])),
                            "images_trained_on": v.images_trained_on,
                            "seconds": v.data.get("seconds"),
                        }
                        for v in versions
                    ]
                ),
                indent=2,
            )
        )
        return 0
    if not versions:
        print("no model versions yet; train one with 'labeler train'")
    for v in versions:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created or 0))
        metrics = ", ".join(f"{k} {val:.3f}" for k, val in v.metrics.items() if isinstance(val, (int, float)))
        parent = f" from #{v.parent}" if v.parent else ""
        print(
            f"{'*' if v.active else ' '} #{v.id:<4d} {v.plugin:12s} {when}  {metrics or 'no metrics'}"
            f"  ({v.images_trained_on or 0} images{parent})"
        )
    return 0
