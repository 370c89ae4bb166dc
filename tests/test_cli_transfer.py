"""``labeler import`` and ``labeler export``: help, exit codes, summaries, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_format_common import coco_document, make_image, project_state

from labeler.cli import main
from labeler.core.store import Project

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("verb", ["import", "export"])
def test_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: labeler {verb}") and "--format" in out and "--values" in out


def test_import_then_export_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.json").write_text(json.dumps(coco_document(tmp_path)))
    Project.create(tmp_path / "proj").close()
    assert main(["import", str(tmp_path / "proj"), str(tmp_path / "c.json")]) == 0  # format detected
    assert "imported coco: 2 images (2 new, 2 marked done), 2 annotations imported" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "proj"), str(tmp_path / "out.json"), "--masks", "polygon"]) == 0
    assert "2 images, 2 annotations exported to" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "out.json").read_text())["annotations"]) == 2
    for fmt in ("labelme", "voc", "yolo", "masks"):
        assert main(["export", str(tmp_path / "proj"), str(tmp_path / fmt), "--format", fmt]) == 0
        assert f"exported {fmt}: 2 images" in capsys.readouterr().out
        assert any((tmp_path / fmt).iterdir())
    # labelme files come back in, nothing doubled
    assert main(["import", str(tmp_path / "proj"), str(tmp_path / "labelme"), "--format", "labelme"]) == 0  # matched
    assert "2 skipped (already in the project: 2)" in capsys.readouterr().out


def test_masks_import_with_values_ignore_and_no_done(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_image(tmp_path / "image" / "1.png", 6, 4)
    (tmp_path / "label").mkdir()
    label = np.array([[0, 0, 255, 255, 11, 11]] * 4, dtype=np.uint8)
    Image.fromarray(label).save(tmp_path / "label" / "1.png")
    Project.create(tmp_path / "proj").close()
    code = main(
        [
            "import",
            str(tmp_path / "proj"),
            str(tmp_path / "label"),
            "--format",
            "masks",
            "--images",
            str(tmp_path / "image"),
            "--values",
            "0=membrane,255=cell",
            "--ignore",
            "11",
            "--no-done",
        ]
    )
    assert code == 0
    summary = "1 images (1 new, 0 marked done), 2 annotations imported, 1 ignore masks, 2 new categories"
    assert summary in capsys.readouterr().out
    with Project.open(tmp_path / "proj") as project:
        assert [c.name for c in project.categories()] == ["membrane", "cell"]
        assert project.image_count(done=True) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{proj}", "{bad}", "--format", "coco"], "bad.json: not valid JSON"),
        (["import", "{proj}", "{tmp}/nope.json", "--format", "coco"], "nope.json: no such file"),
        (["import", "{proj}", "{good}", "--values", "1=a"], "--values and --ignore apply to --format masks only"),
        (["import", "{proj}", "{good}", "--images", "{tmp}/nowhere"], "--images folder does not exist"),
        (["import", "{tmp}/noproject", "{good}"], "is not a labeler project"),
        (["export", "{proj}", "{tmp}/out"], "give --format"),
        (["export", "{proj}", "{tmp}/out", "--format", "yolo", "--masks", "rle"], "apply to --format coco only"),
        (
            ["export", "{proj}", "{tmp}/o", "--format", "masks", "--values", "1=unknown"],
            "not a category of the project",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "bad.json").write_text('{"images": [')
    (tmp_path / "good.json").write_text(json.dumps(coco_document(tmp_path)))
    project = Project.create(tmp_path / "proj")
    before = project_state(project)
    project.close()
    names = {
        "proj": str(tmp_path / "proj"),
        "bad": str(tmp_path / "bad.json"),
        "good": str(tmp_path / "good.json"),
        "tmp": str(tmp_path),
    }
    assert main([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    with Project.open(tmp_path / "proj") as project:
        assert project_state(project) == before


def test_in_a_fresh_process(tmp_path: Path) -> None:
    """What a shell sees: exit codes, the summary on stdout, no progress bar when not a terminal."""
    (tmp_path / "c.json").write_text(json.dumps(coco_document(tmp_path)))
    Project.create(tmp_path / "proj").close()
    ok = subprocess.run(
        [sys.executable, "-m", "labeler", "import", str(tmp_path / "proj"), str(tmp_path / "c.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert ok.returncode == 0 and ok.stderr == "" and "2 annotations imported" in ok.stdout
    (tmp_path / "c.json").write_text("[")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "labeler",
            "import",
            str(tmp_path / "proj"),
            str(tmp_path / "c.json"),
            "--format",
            "coco",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("labeler import: error:") and bad.stderr.count("\n") == 1


def test_labelme_import_adds_images_only_with_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_format_common import make_image

    make_image(tmp_path / "lm" / "a.png", 40, 30)
    (tmp_path / "lm" / "a.json").write_text(
        '{"imagePath": "a.png", "shapes": [{"label": "c", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"}]}'
    )
    from labeler.core.store import Project

    Project.create(tmp_path / "proj").close()
    assert main(["import", str(tmp_path / "proj"), str(tmp_path / "lm")]) == 0
    assert "image not in the project (import with add images to add it): 1" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "proj"), str(tmp_path / "lm"), "--add-images"]) == 0
    assert "1 images (1 new, 1 marked done), 1 annotations imported" in capsys.readouterr().out
