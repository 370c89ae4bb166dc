"""Training in a child process: ``python -m labeler train PROJECT --plugin NAME --progress json``.

:class:`TrainingController` starts and cancels the run and turns its events
(:mod:`labeler.learning.events`) into signals; it never imports torch. The runner in the child
writes the new model version to the project itself; a crash or a cancel leaves the project and
its active model as they were.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from labeler.core.location import ChildProject
from labeler.gui.controllers.workers import ChildRun
from labeler.learning import events as ev
from labeler.learning.usable import skipped_summary


class TrainingController(ChildRun):
    """One training run at a time.

    Signals: ``progress(event)`` per event of the child (the dataclasses of
    :mod:`labeler.learning.events`); ``finished(ok, message, log_tail)`` where ``ok`` is true for a
    run that ended normally (exit 0), ``message`` says what happened in one line, ``log_tail`` is
    the end of its output.
    """

    progress = Signal(object)
    finished = Signal(bool, str, str)
    FAILED = "Training failed"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.plugin: str | None = None
        self.result: ev.TrainDone | None = None

    def start(
        self,
        project: ChildProject,
        plugin: str,
        *,
        time_budget: float | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        """Start ``labeler train`` on ``project`` (seconds of ``time_budget``; None: plugin default)."""
        if self.is_running():
            raise RuntimeError("a training run is already going")
        args = ["train", project.argument, "--plugin", plugin, "--progress", "json", *project.options]
        if time_budget is not None:
            args += ["--time-budget", f"{time_budget:g}"]
        args += extra_args or []
        self.plugin = plugin
        self.result = None
        self._start_child(args, env=project.env)

    def handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.TrainDone):
            self.result = event
        self.progress.emit(event)

    def cancelled_message(self) -> str:
        return "Training cancelled; the active model is unchanged."

    def success_message(self) -> str:
        done = self.result
        if done is None or done.version is None:
            return "Training finished."
        score = f" (validation {done.metric:.3f})" if done.metric is not None else ""
        kept = "now active" if done.activated else "kept; the active version scored better"
        left_out = f" Plugin {skipped_summary(done.skipped)}." if done.skipped else ""
        return f"Training finished: version #{done.version}{score}, {kept}.{left_out}"

    def end_message(self, code: int, *, cancelled: bool, killed_note: str) -> str:
        message = super().end_message(code, cancelled=cancelled, killed_note=killed_note)
        return message if cancelled or code == 0 else f"{message} The active model is unchanged."

    def ended(self, *, ok: bool, cancelled: bool, code: int, message: str, tail: str) -> None:
        self.finished.emit(ok, message, tail)
