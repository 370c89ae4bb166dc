"""Helpers shared by the learning tests (not a test module): the example plugin, installed."""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends import Backend

# Tiny test networks run far faster on one thread than on several threads that spin against the
# rest of a busy machine; child processes (the CLI tests) inherit this.
os.environ.setdefault("LABELER_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
MINIMAL_SOURCE = REPO / "examples" / "minimal_plugin"
_installed: Path | None = None


def install_minimal_plugin() -> Path:
    """pip-install ``examples/minimal_plugin`` (a copy, so the source stays clean) into a temporary
    target folder once per test process, put that folder on ``sys.path`` (so
    ``importlib.metadata`` sees its dist-info and entry point), and return the folder."""
    global _installed
    if _installed is not None:
        return _installed
    work = Path(tempfile.mkdtemp(prefix="labeler-minimal-plugin-"))
    atexit.register(shutil.rmtree, work, True)
    source = work / "src"
    shutil.copytree(MINIMAL_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    # Without build isolation first (no network needed, uses the venv's setuptools); a fresh venv's
    # old setuptools may lack what that needs (``wheel``), so then the ordinary isolated build.
    attempts = []
    for isolation in (["--no-build-isolation"], []):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                *isolation,
                "--disable-pip-version-check",
                "--no-compile",
                "--target",
                str(target),
                str(source),
            ],
            capture_output=True,
            text=True,
        )
        attempts.append(done.stdout + done.stderr)
        if done.returncode == 0:
            break
        shutil.rmtree(target, ignore_errors=True)
    else:
        raise RuntimeError("pip could not install examples/minimal_plugin:\n" + "\n".join(attempts))
    shutil.rmtree(source, ignore_errors=True)
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    _installed = target
    return target


def minimal_plugin():
    """A fresh instance of the installed example plugin."""
    install_minimal_plugin()
    from labeler_minimal_plugin import MinimalSegmenter

    return MinimalSegmenter()


def synthetic_project(backend: Backend, root: Path, **options: Any) -> Any:
    """:func:`labeler.learning.synthetic.make_project` on ``backend``: images and models under
    ``root``, the project in that folder (SQLite) or in its own database (PostgreSQL)."""
    from labeler.learning.synthetic import make_project

    return make_project(root, database=backend.url(root), **options)


def trained_project(backend: Backend, root: Path, *, images: int, done: int = 6) -> Iterator[tuple[Any, Any]]:
    """A synthetic project with the example plugin trained on it for 30 epochs: yields the project
    and the loaded model version, and closes the project after (for a fixture to ``yield from``)."""
    from labeler.learning.checkpoints import load_version
    from labeler.learning.training import train

    project = synthetic_project(backend, root, images=images, done=done)
    plugin = minimal_plugin()
    version = train(project, plugin, epochs=30).version
    yield project, load_version(project, version, plugin)
    project.close()
