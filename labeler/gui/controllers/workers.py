"""Long work off the UI thread.

- :class:`FunctionWorker` runs a Python callable on a thread of the global ``QThreadPool`` and
  reports through Qt signals (queued to the UI thread): ``progress(done, total)``,
  ``finished(result)``, ``failed(message)``. The UI touches results only in its slots.
- :class:`CliJob` runs ``python -m labeler VERB ...`` as a child process (training, batch
  auto-labelling) through ``QProcess``: every stdout line that is a JSON object is read with
  :func:`labeler.learning.events.parse_line` and emitted as ``reported(event)`` (a typed event, or
  :class:`~labeler.learning.events.Unreadable`); other output is kept as a log whose last lines
  come with ``finished``.
- :class:`ChildRun` is what the training and the auto-labelling controllers share: one child at a
  time, start, cancel, its events, and the one-line message when it ends.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QRunnable, QThreadPool, QTimer, Signal

from labeler.learning import events as ev

# Workers still running are kept alive here (a QRunnable's Python wrapper must outlive its run).
_LIVE: set[FunctionWorker] = set()


class _WorkerSignals(QObject):
    progress = Signal(int, int)
    finished = Signal(object)
    failed = Signal(str)


class FunctionWorker(QRunnable):
    """Run ``fn(*args, progress=..., **kwargs)`` on a pool thread.

    If ``with_progress`` is true the callable receives ``progress=callback(done, total)``, which
    emits :attr:`progress` (thread-safe). An exception becomes ``failed("Type: message")``.
    Connect to ``worker.signals`` before calling :meth:`start`.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, with_progress: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.signals = _WorkerSignals()
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._with_progress = with_progress
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def start(self, pool: QThreadPool | None = None) -> FunctionWorker:
        _LIVE.add(self)
        self.signals.finished.connect(self._release)
        self.signals.failed.connect(self._release)
        (pool or QThreadPool.globalInstance()).start(self)
        return self

    def _release(self, *_: object) -> None:
        self._done = True
        _LIVE.discard(self)

    def run(self) -> None:  # pool thread
        kwargs = dict(self._kwargs)
        if self._with_progress:
            kwargs["progress"] = lambda done, total: self.signals.progress.emit(int(done), int(total))
        try:
            result = self._fn(*self._args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never raised into Qt
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, (OSError, ValueError)) and type(exc).__module__.split(".")[0] != "labeler":
                message = f"{type(exc).__name__}: {message}"
            traceback.print_exc()
            self._done = True  # before the signal: slots see the worker as finished
            self.signals.failed.emit(message)
            return
        self._done = True
        self.signals.finished.emit(result)


def labeler_command(args: Sequence[str]) -> tuple[str, list[str]]:
    """The program and arguments that run ``labeler ARGS`` with this interpreter."""
    return sys.executable, ["-m", "labeler", *args]


class CliJob(QObject):
    """A ``labeler`` CLI command in a child process, reporting JSON lines.

    Signals: ``reported(event)`` per JSON line printed on stdout, read by
    :func:`labeler.learning.events.parse_line` (an ``Unreadable`` one says why it could not be
    read); ``finished(exit_code, log_tail)`` once, also after :meth:`cancel` (then ``cancelled``
    is true). ``exit_code`` is -1 when the process crashed or could not start. Other output
    (stdout or stderr) is kept for :meth:`log_tail`.
    """

    reported = Signal(object)
    finished = Signal(int, str)

    TAIL_LINES = 40
    GRACE_MS = 10_000
    """After Cancel (SIGTERM), how long the process has to stop cleanly before it is killed."""

    def __init__(
        self, args: Sequence[str], parent: QObject | None = None, *, env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(parent)
        self.args = list(args)
        self.cancelled = False
        self.killed = False
        self.started_at = 0.0
        self._tail: deque[str] = deque(maxlen=self.TAIL_LINES)
        self._buffers = {"out": b"", "err": b""}
        self._finished = False
        self.process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")
        for name, value in (env or {}).items():  # e.g. a database password, never on the command line
            environment.insert(name, value)
        self.process.setProcessEnvironment(environment)
        self.process.readyReadStandardOutput.connect(lambda: self._read("out"))
        self.process.readyReadStandardError.connect(lambda: self._read("err"))
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)

    def start(self) -> None:
        program, arguments = labeler_command(self.args)
        self.started_at = time.monotonic()
        self.process.start(program, arguments)

    def is_running(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM; the CLI leaves the project consistent); kill it if it
        still runs :attr:`GRACE_MS` later (a worker stuck in I/O), and say so (:attr:`killed`,
        :meth:`stop_note`, a line in the log tail)."""
        if not self.is_running():
            return
        self.cancelled = True
        self.process.terminate()
        QTimer.singleShot(self.GRACE_MS, self._kill_if_running)

    def stop(self, timeout_ms: int = 5000) -> None:
        """Stop the process now and wait for it: SIGTERM (the CLI stops cleanly and leaves the
        project consistent), then SIGKILL if it has not ended within ``timeout_ms``. The process is
        reaped before this returns (no orphan, no zombie); ``finished`` has been emitted."""
        if not self.is_running():
            return
        self.cancelled = True
        self.process.terminate()
        if not self.process.waitForFinished(timeout_ms):
            self._kill(timeout_ms)
            self.process.waitForFinished(timeout_ms)

    def stop_note(self) -> str:
        """A sentence for the user when the process had to be killed, else ``""``."""
        if not self.killed:
            return ""
        return (
            f"It did not stop within {self.GRACE_MS / 1000:g} s of being asked and was killed; "
            "the project keeps what was saved before."
        )

    def _kill_if_running(self) -> None:
        if self.is_running():
            self._kill(self.GRACE_MS)

    def _kill(self, waited_ms: int) -> None:
        self.killed = True
        text = f"the process did not stop within {waited_ms / 1000:g} s of being asked; killed it"
        self._tail.append(text)
        self.process.kill()

    def add_log(self, text: str) -> None:
        """Add a line to the log tail (e.g. an error the child reported as a JSON event)."""
        self._tail.append(text)

    def log_tail(self) -> str:
        return "\n".join(self._tail)

    def _read(self, which: str) -> None:
        data = bytes(
            (self.process.readAllStandardOutput() if which == "out" else self.process.readAllStandardError()).data()
        )
        buffer = self._buffers[which] + data
        *lines, rest = buffer.split(b"\n")
        self._buffers[which] = rest
        for raw in lines:
            self._line(raw.decode("utf-8", errors="replace").rstrip("\r"), from_stdout=which == "out")

    def _line(self, text: str, *, from_stdout: bool) -> None:
        if not text.strip():
            return
        if from_stdout and text.lstrip().startswith("{"):
            self.reported.emit(ev.parse_line(text))
            return
        # a progress bar's carriage returns: keep the last state only
        self._tail.append(text.split("\r")[-1])

    def _flush(self) -> None:
        for which in ("out", "err"):
            self._read(which)
            rest = self._buffers[which]
            self._buffers[which] = b""
            if rest.strip():
                self._line(rest.decode("utf-8", errors="replace"), from_stdout=which == "out")

    def _on_finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        if self._finished:
            return
        self._finished = True
        self._flush()
        code = exit_code if status == QProcess.ExitStatus.NormalExit else -1
        self.finished.emit(code, self.log_tail())

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self._finished:
            self._finished = True
            self._tail.append(f"could not start {sys.executable}: {self.process.errorString()}")
            self.finished.emit(-1, self.log_tail())


class ChildRun(QObject):
    """One ``labeler`` child process at a time (a training run, an "auto-label all"): start,
    cancel, its typed events, and the one-line message when it ends.

    Subclasses handle their events in :meth:`handle` and word the end in :meth:`ended`. An
    ``error`` event is kept as :attr:`error` (and put in the log tail); a line that cannot be read
    is reported in the log tail and counted in :attr:`unreadable`, never raised.
    """

    FAILED = "The run failed"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job: CliJob | None = None
        self.error: str | None = None
        self.unreadable: list[ev.Unreadable] = []

    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _start_child(self, args: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        if self.is_running():
            raise RuntimeError(f"{type(self).__name__}: a run is already going")
        self.error = None
        self.unreadable = []
        self.job = CliJob(args, self, env=env)
        self.job.reported.connect(self._on_event)
        self.job.finished.connect(self._on_finished)
        self.job.start()

    def _on_event(self, event: ev.Event | ev.Unreadable) -> None:
        if isinstance(event, ev.Unreadable):
            self.unreadable.append(event)
            if self.job is not None:
                self.job.add_log(
                    f"ignored a line from the child that could not be read ({event.reason}): {event.line[:200]}"
                )
            return
        if isinstance(event, ev.JobError):
            self.error = event.message
            if self.job is not None:
                self.job.add_log(f"error: {self.error}")
        self.handle(event)

    def handle(self, event: ev.Event) -> None:
        """One event of the child (errors are recorded before this is called)."""

    def ended(self, *, ok: bool, cancelled: bool, code: int, message: str, tail: str) -> None:
        """The run ended; ``message`` says how in one line (see :meth:`end_message`)."""

    def cancelled_message(self) -> str:
        return "Cancelled."

    def success_message(self) -> str:
        return "Finished."

    def end_message(self, code: int, *, cancelled: bool, killed_note: str) -> str:
        """How the run ended, in one line: cancelled (and killed), finished, or failed with the
        child's error (else its exit code)."""
        if cancelled:
            return f"{self.cancelled_message()} {killed_note}".strip()
        if code == 0:
            message = self.success_message()
        else:
            why = f": {self.error}" if self.error else f" (exit code {code})"
            message = f"{self.FAILED}{why}."
        if self.unreadable:
            n = len(self.unreadable)
            message += f" ({n} line{'' if n == 1 else 's'} from the child could not be read; see the log.)"
        return message

    def _on_finished(self, code: int, tail: str) -> None:
        job = self.job
        cancelled = job is not None and job.cancelled
        note = job.stop_note() if job is not None else ""
        message = self.end_message(code, cancelled=cancelled, killed_note=note)
        self.ended(ok=code == 0 and not cancelled, cancelled=cancelled, code=code, message=message, tail=tail)
        if job is not None:
            job.deleteLater()
        self.job = None
