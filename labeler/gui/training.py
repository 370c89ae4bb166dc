"""Training in a child process: ``python -m labeler train PROJECT --plugin NAME --progress json``.

:class:`TrainingController` starts and cancels the run and turns its JSON lines into signals; it
never imports torch. The runner in the child writes the new model version to the project itself;
a crash or a cancel leaves the project and its active model as they were.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from labeler.gui.workers import CliJob
from labeler.learning.usable import skipped_summary


def installed_plugins() -> list[str]:
    """Names of installed model plugins, read from entry points without importing them (no torch)."""
    import importlib.metadata

    from labeler.learning.api import ENTRY_POINT_GROUP

    return sorted({e.name for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def plugin_descriptions() -> dict[str, str]:
    """Each installed plugin's one-line description (its package's summary), without importing it."""
    import importlib.metadata

    from labeler.learning.api import ENTRY_POINT_GROUP

    out: dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        summary = entry.dist.metadata.json.get("summary") if entry.dist is not None else None
        out[entry.name] = str(summary) if summary else entry.value
    return out


def progress_fraction(event: dict[str, Any]) -> float | None:
    """How far a run is, in [0, 1], from one progress event (``fraction``, else elapsed and eta)."""
    if isinstance(event.get("fraction"), (int, float)):
        return max(0.0, min(1.0, float(event["fraction"])))
    elapsed, eta = event.get("elapsed"), event.get("eta")
    if isinstance(elapsed, (int, float)) and isinstance(eta, (int, float)) and math.isfinite(eta):
        total = float(elapsed) + float(eta)
        return max(0.0, min(1.0, float(elapsed) / total)) if total > 0 else None
    return None


def event_loss(event: dict[str, Any]) -> float | None:
    """The total training loss an event reports (``losses.total``, the sum of ``losses``, or ``loss``)."""
    losses = event.get("losses")
    if isinstance(losses, dict) and losses:
        if isinstance(losses.get("total"), (int, float)):
            return float(losses["total"])
        values = [float(v) for v in losses.values() if isinstance(v, (int, float))]
        return sum(values) if values else None
    loss = event.get("loss")
    return float(loss) if isinstance(loss, (int, float)) else None


class TrainingController(QObject):
    """One training run at a time.

    Signals: ``started(plugin)``; ``progress(event)`` per JSON line of the child;
    ``finished(ok, message, log_tail)`` where ``ok`` is true for a run that ended normally
    (exit 0), ``message`` says what happened in one line, ``log_tail`` is the end of its output.
    """

    started = Signal(str)
    progress = Signal(dict)
    finished = Signal(bool, str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job: CliJob | None = None
        self.plugin: str | None = None
        self.last_event: dict[str, Any] = {}
        self.error: str | None = None
        self.result: dict[str, Any] | None = None  # the child's "done" event

    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def start(
        self,
        project_root: Path,
        plugin: str,
        *,
        time_budget: float | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        """Start ``labeler train`` on ``project_root`` (seconds of ``time_budget``; None: plugin default)."""
        if self.is_running():
            raise RuntimeError("a training run is already going")
        args = ["train", str(project_root), "--plugin", plugin, "--progress", "json"]
        if time_budget is not None:
            args += ["--time-budget", f"{time_budget:g}"]
        args += extra_args or []
        self.plugin = plugin
        self.last_event = {}
        self.error = None
        self.result = None
        self.job = CliJob(args, self)
        self.job.event.connect(self._on_event)
        self.job.finished.connect(self._on_finished)
        self.job.start()
        self.started.emit(plugin)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _on_event(self, event: dict[str, Any]) -> None:
        self.last_event = event
        kind = event.get("event")
        if kind == "error":
            self.error = str(event.get("message") or "unknown error")
            if self.job is not None:
                self.job.add_log(f"error: {self.error}")
        elif kind == "done":
            self.result = event
        self.progress.emit(event)

    def _on_finished(self, code: int, tail: str) -> None:
        job = self.job
        cancelled = job is not None and job.cancelled
        if cancelled:
            message = "Training cancelled; the active model is unchanged."
            if job is not None and job.killed:
                message = f"{message} {job.stop_note()}"
        elif code == 0:
            message = "Training finished."
            if self.result is not None and self.result.get("version") is not None:
                new = self.result["version"]
                metric = self.result.get("metric")
                score = f" (validation {metric:.3f})" if isinstance(metric, (int, float)) else ""
                kept = "now active" if self.result.get("activated") else "kept; the active version scored better"
                skipped = self.result.get("skipped")
                left_out = f" Plugin {skipped_summary(skipped)}." if isinstance(skipped, dict) and skipped else ""
                message = f"Training finished: version #{new}{score}, {kept}.{left_out}"
        else:
            why = f": {self.error}" if self.error else f" (exit code {code})"
            message = f"Training failed{why}. The active model is unchanged."
        self.finished.emit(code == 0 and not cancelled, message, tail)
        if job is not None:
            job.deleteLater()
        self.job = None
