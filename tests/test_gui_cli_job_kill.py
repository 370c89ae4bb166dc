"""Cancel works even when the child is stuck (#11): SIGTERM, then kill after the grace period,
and the job says so."""

from __future__ import annotations

import sys

from labeler.gui import workers


def test_cancel_kills_a_child_that_ignores_sigterm_and_says_so(qtbot, monkeypatch):
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    monkeypatch.setattr(workers, "labeler_command", lambda args: (sys.executable, ["-c", code]))
    job = workers.CliJob(["train"])
    job.GRACE_MS = 300
    with qtbot.waitSignal(job.log, timeout=10_000):
        job.start()  # 'ready' comes as a log line
    with qtbot.waitSignal(job.finished, timeout=10_000) as blocker:
        job.cancel()
    assert job.cancelled and job.killed
    assert "killed" in job.stop_note() and "0.3 s" in job.stop_note()
    assert "did not stop within 0.3 s of being asked; killed it" in blocker.args[1]
