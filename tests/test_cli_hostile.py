"""Hostile runtime through the command line (#11 "files that are not images", #18 items 6 and 8):
a hostile images folder through init, auto-label and --screenshot (each under a time limit), a
project another program holds, a killed init, a run stuck in I/O that gets SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from learning_support import install_minimal_plugin, minimal_plugin

from labeler.cli import main
from labeler.core import store as store_module
from labeler.core.store import Project, ProjectBusyError, list_image_files
from labeler.learning.synthetic import make_project
from labeler.learning.training import train


def _env() -> dict[str, str]:
    target = install_minimal_plugin()
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
        QT_QPA_PLATFORM="offscreen",
    )


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labeler", *args], capture_output=True, text=True, env=_env(), timeout=timeout
    )


def _hostile_folder(folder: Path, good: Path) -> None:
    folder.mkdir()
    os.mkfifo(folder / "fifo.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    os.symlink("loop2.png", folder / "loop1.png")
    os.symlink("loop1.png", folder / "loop2.png")
    (folder / "x.png").mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "doc.jpg").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    _ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    bomb = bytearray(buf.tobytes())
    bomb[16:24] = (60000).to_bytes(4, "big") * 2  # IHDR says 60000 x 60000
    (folder / "bomb.png").write_bytes(bytes(bomb))
    (folder / "good.png").write_bytes(good.read_bytes())


def test_listing_takes_regular_files_only(tmp_path: Path):
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), np.zeros((4, 4, 3), np.uint8))
    _hostile_folder(tmp_path / "h", good)
    names = [p.name for p in list_image_files(tmp_path / "h")]
    assert names == ["bomb.png", "doc.jpg", "empty.jpg", "good.png"]


@pytest.mark.slow
def test_a_hostile_folder_through_init_auto_label_and_the_window(tmp_path: Path):
    root = tmp_path / "proj"
    project = make_project(root, images=6, done=5)
    train(project, minimal_plugin(), epochs=2)
    project.close()
    _hostile_folder(root / "hostile", root / "images" / "img0005.png")
    out = _run("init", str(root), "--images", str(root / "hostile"), timeout=60)
    assert out.returncode == 0, out.stderr
    with Project.open(root) as project:
        added = sorted(Path(r.path).name for r in project.images() if r.path.startswith("hostile/"))
    assert added == ["bomb.png", "doc.jpg", "empty.jpg", "good.png"]
    out = _run("auto-label", str(root), "--plugin", "minimal", "--all", timeout=120)
    assert out.returncode == 0, out.stderr
    skipped = [line for line in out.stderr.splitlines() if "skipped:" in line]
    assert len(skipped) == 3 and all(n in out.stderr for n in ("bomb.png", "doc.jpg", "empty.jpg"))
    shot = tmp_path / "shot.png"
    out = _run(str(root), "--screenshot", str(shot), timeout=90)
    assert out.returncode == 0, out.stderr
    assert shot.is_file()


def test_a_project_another_program_holds_is_said_in_one_line_with_exit_2(tmp_path: Path, monkeypatch, capsys):
    make_project(tmp_path / "proj", images=2, done=0).close()
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.3)
    holder = sqlite3.connect(tmp_path / "proj" / "labeler.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Project.open(tmp_path / "proj") as project, pytest.raises(ProjectBusyError):
            project.add_category("late")
        capsys.readouterr()
        assert main(["init", str(tmp_path / "proj"), "--classes", "x"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another program holds the project" in err[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Project.open(tmp_path / "proj") as project:
        assert [c.name for c in project.categories()] == ["red", "green"]


def test_an_interrupted_init_adds_nothing(tmp_path: Path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), np.zeros((4, 4, 3), np.uint8))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill during the listing

    monkeypatch.setattr(store_module, "image_files_by_folder", interrupted)
    assert main(["init", str(tmp_path / "proj"), "--images", str(images), "--classes", "a,b"]) == 130
    with Project.open(tmp_path / "proj") as project:
        assert project.categories() == [] and project.image_count() == 0


def test_a_run_stuck_in_io_ends_on_sigterm_and_says_so(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = (
        "import sys; from labeler.cli import learning as L\n"
        f"with L._StopFlag(grace=1.0):\n    print('ready', flush=True)\n    open({str(fifo)!r}).read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 143 and "ending now" in err


def test_screenshot_with_an_unreadable_image_says_why_at_once(tmp_path: Path):
    root = tmp_path / "proj"
    make_project(root, images=2, done=0).close()
    for path in (root / "images").glob("*.png"):
        path.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    started = time.monotonic()
    out = _run(str(root), "--screenshot", str(tmp_path / "s.png"), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "cannot be shown" in out.stderr or "not a readable image" in out.stderr
    assert time.monotonic() - started < 14  # not the 15 s wait for an image that never comes
