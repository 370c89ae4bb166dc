"""Cancel works even when the child is stuck (#11): SIGTERM, then kill after the grace period,
and the job says so."""

from __future__ import annotations

import sys

from pytestqt.qtbot import QtBot

from labeler.core.location import ChildProject
from labeler.gui.controllers import workers
from labeler.learning import events as ev

READY = ev.to_line(ev.TrainCancelled(steps=0))


def test_cancel_kills_a_child_that_ignores_sigterm_and_says_so(qtbot: QtBot, monkeypatch):
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"print({READY!r}, flush=True); time.sleep(60)"
    )
    monkeypatch.setattr(workers, "labeler_command", lambda args: (sys.executable, ["-c", code]))
    job = workers.CliJob(["train"])
    job.GRACE_MS = 300
    with qtbot.waitSignal(job.reported, timeout=10_000):
        job.start()  # the child is running once its first event comes
    with qtbot.waitSignal(job.finished, timeout=10_000) as blocker:
        job.cancel()
    assert job.cancelled and job.killed
    assert "killed" in job.stop_note() and "0.3 s" in job.stop_note()
    assert "did not stop within 0.3 s of being asked; killed it" in blocker.args[1]


def test_unreadable_lines_from_a_child_are_reported_not_crashed_on(qtbot: QtBot, monkeypatch):
    """A line that is not a valid event (broken JSON, an unknown kind, a wrong type, an old protocol
    version) is kept in the log with its reason; the run's good events still arrive and its end
    message says lines were ignored."""
    from labeler.gui.controllers.training_run import TrainingController

    good = ev.to_line(ev.TrainProgress(step=1, elapsed=0.5, eta=1.5, losses={"total": 0.5}))
    lines = [
        '{"v": 1, "job": "train", "event": "progress", "step": 1',
        '{"v": 1, "job": "train", "event": "dance"}',
        '{"v": 1, "job": "train", "event": "progress", "step": "one", "elapsed": 1}',
        '{"event": "progress", "step": 2, "elapsed": 1}',
        good,
        "plain text is just log",
    ]
    code = "import sys\nfor line in sys.argv[1:]:\n    print(line, flush=True)"
    monkeypatch.setattr(workers, "labeler_command", lambda args: (sys.executable, ["-c", code, *lines]))
    controller = TrainingController()
    seen: list[object] = []
    controller.progress.connect(seen.append)
    with qtbot.waitSignal(controller.finished, timeout=20_000) as blocker:
        controller.start(ChildProject("nowhere"), "fake")
    ok, message, tail = blocker.args
    assert ok and seen == [ev.parse_line(good)]
    assert len(controller.unreadable) == 4
    assert "4 lines from the child could not be read" in message
    for reason in ("not JSON", "unknown train event 'dance'", "field 'step'", "protocol version None"):
        assert reason in tail
    assert "plain text is just log" in tail
