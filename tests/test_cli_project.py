"""``labeler init`` / ``labeler info`` and the dispatcher's contract: help, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeler.cli import VERBS, main
from labeler.core.store import DB_NAME, Project

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m labeler ARGS`` in a fresh process (what a user's shell sees)."""
    return subprocess.run(
        [sys.executable, "-m", "labeler", *args], capture_output=True, text=True, timeout=120, cwd=cwd or REPO
    )


def write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((6, 9, 3), i, dtype=np.uint8)).save(folder / f"{i:04d}.png")


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_works_for_every_verb(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: labeler {verb}")


def test_top_level_help_lists_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in ("init", "info"):
        assert verb in out


def test_help_in_a_fresh_process_is_fast() -> None:
    start = time.perf_counter()
    proc = run_cli("--help")
    seconds = time.perf_counter() - start
    assert proc.returncode == 0 and "usage: labeler" in proc.stdout
    assert seconds < 10, f"'labeler --help' took {seconds:.1f} s"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The CLI arguments naming a new project: a folder, or a PostgreSQL URL and its image root."""
    if request.param == "postgresql":
        return [request.getfixturevalue("pg_url"), "--image-root", str(tmp_path)]
    return [str(tmp_path / "p")]


def _open(where: list[str]) -> Project:
    return Project.open(where[0], image_root=where[2] if len(where) > 2 else None)


def test_init_and_info(where: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_images(tmp_path / "imgs", 5)
    assert main(["init", *where, "--images", str(tmp_path / "imgs"), "--classes", "cat, dog,,cat"]) == 0
    out = capsys.readouterr().out
    assert "5 images (5 new), 2 categories" in out
    with _open(where) as p:
        assert [c.name for c in p.categories()] == ["cat", "dog"]
        assert p.image_count() == 5
        assert p.images()[0].path == ("imgs/0000.png" if p.url else "../imgs/0000.png")
    # again, with more images: only the new ones are added, categories are not doubled
    write_images(tmp_path / "more", 2)
    assert main(["init", *where, "--images", str(tmp_path / "more"), "--classes", "dog,bird"]) == 0
    assert "7 images (2 new), 3 categories" in capsys.readouterr().out

    assert main(["info", *where]) == 0
    out = capsys.readouterr().out
    assert "images      7 (0 done)" in out and "cat, dog, bird" in out
    assert main(["info", *where, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 7 and summary["done"] == 0
    assert [c["name"] for c in summary["categories"]] == ["cat", "dog", "bird"]
    assert summary["annotations"] == {"proposed": 0, "accepted": 0, "rejected": 0}
    assert summary["model_versions"] == []


def test_postgresql_project_needs_an_image_root(
    pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABELER_IMAGE_ROOT", raising=False)
    assert main(["init", pg_url]) == 2
    assert "--image-root" in capsys.readouterr().err


def test_a_password_never_shows_in_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A URL carrying a password (which libpq's ~/.pgpass or PGPASSFILE should hold instead) is
    shown without it when the connection fails."""
    for url in ("postgresql://bob:s3cret-pw@127.0.0.1:1/team", "postgresql://127.0.0.1:1/team?password=s3cret-pw"):
        assert main(["info", url, "--image-root", str(tmp_path)]) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and "cannot connect" in lines[0], captured.err
        assert "s3cret-pw" not in captured.err + captured.out
        assert "***" in lines[0]


def test_init_without_images_makes_an_empty_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / DB_NAME).is_file()
    assert "0 images (0 new), 0 categories" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda t: (t / "f").write_text("x"), ["init", "{t}/f"], "is a file, not a folder"),
        (lambda t: None, ["init", "{t}/p", "--images", "{t}/missing"], "--images {t}/missing: no such folder"),
        (lambda t: (t / "f").write_text("x"), ["init", "{t}/p", "--images", "{t}/f"], "is a file, not a folder"),
        (lambda t: None, ["info", "{t}"], "is not a labeler project"),
        (lambda t: None, ["info", "{t}/nowhere"], "is not a labeler project"),
        (
            lambda t: ((t / "p").mkdir(), (t / "p" / DB_NAME).write_bytes(b"garbage" * 200)),
            ["info", "{t}/p"],
            "not a readable project database",
        ),
    ],
    ids=[
        "init-on-file",
        "init-missing-images",
        "init-images-is-file",
        "info-non-project",
        "info-missing",
        "info-corrupt",
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], make, args, message) -> None:
    make(tmp_path)
    argv = [a.format(t=tmp_path) for a in args]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"labeler {argv[0]}: error: ")
    assert message.format(t=tmp_path) in lines[0]
    assert "Traceback" not in captured.err
    if argv[0] == "init" and "--images" in argv:
        assert not (tmp_path / "p").exists(), "a failed init must not leave a half-made project"


def test_bad_input_in_a_real_process(tmp_path: Path) -> None:
    proc = run_cli("info", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "is not a labeler project" in proc.stderr
    proc = run_cli("init")  # missing argument: argparse's usage error, exit 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "required" in proc.stderr


def test_newer_schema_is_reported_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    Project.create(tmp_path / "p").close()
    con = sqlite3.connect(tmp_path / "p" / DB_NAME)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    assert main(["info", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "newer labeler" in err


def test_init_success_in_a_real_process(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 3)
    proc = run_cli("init", str(tmp_path / "p"), "--images", str(tmp_path / "imgs"))
    assert proc.returncode == 0, proc.stderr
    assert "3 images" in proc.stdout
    proc = run_cli("info", str(tmp_path / "p"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["images"] == 3


def test_init_on_20000_images_takes_seconds(tmp_path: Path) -> None:
    """Adding a big folder never decodes: 20,000 files go in within seconds."""
    folder = tmp_path / "many"
    folder.mkdir()
    import cv2

    _ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), dtype=np.uint8))
    data = buf.tobytes()
    for i in range(20_000):
        (folder / f"{i:05d}.png").write_bytes(data)
    start = time.perf_counter()
    with Project.create(tmp_path / "p") as p:
        p.add_folder(folder)
        assert p.image_count() == 20_000
    seconds = time.perf_counter() - start
    print(f"add_folder of 20,000 images: {seconds:.2f} s")
    assert seconds < 30


def test_add_brings_in_new_images_and_keeps_every_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from labeler.core.annotation import Annotation, Kind

    root = tmp_path / "proj"
    write_images(root, 3)
    assert main(["init", str(root), "--images", str(root), "--classes", "cat"]) == 0
    with Project.open(root) as project:
        first = project.images()[0]
        project.add_annotation(Annotation(image_id=first.id, category_id=1, kind=Kind.BOX, box_xywh=(1, 1, 2, 2)))
        project.set_done(first.id)
    write_images(root / "later", 2)  # new files appear in the project folder
    capsys.readouterr()
    assert main(["add", str(root)]) == 0  # no PATH: rescan the project folder
    assert "2 new images (3 already there), 5 in all" in capsys.readouterr().out
    outside = tmp_path / "more"
    write_images(outside, 1)
    assert main(["add", str(root), str(outside / "0000.png")]) == 0
    with Project.open(root) as project:
        assert project.image_count() == 6
        assert project.image(first.id).done and len(project.annotations(first.id)) == 1
    assert main(["add", str(root), str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
