"""The learning verbs as the GUI and scripts run them: child processes, JSON lines on stdout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from learning_support import install_minimal_plugin

from labeler.core.annotation import State
from labeler.core.store import Project
from labeler.learning.synthetic import make_project


def _env() -> dict[str, str]:
    target = install_minimal_plugin()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def labeler(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labeler", *args], capture_output=True, text=True, env=_env(), timeout=timeout
    )


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    make_project(tmp_path / "proj", images=8, done=6).close()
    return tmp_path / "proj"


def test_plugins_lists_settings_and_defaults():
    out = labeler("plugins", "--json")
    assert out.returncode == 0, out.stderr
    info = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    settings = {s["name"]: s for s in info["minimal"]["settings"]}
    assert settings["size"]["default"] == 32 and settings["size"]["help"]
    text = labeler("plugins")
    assert "minimal  (segmentation; versions ranked by miou)" in text.stdout and "size=32" in text.stdout


@pytest.mark.slow
def test_train_json_lines_then_models_eval_and_auto_label(project_dir):
    out = labeler(
        "train",
        str(project_dir),
        "--plugin",
        "minimal",
        "--epochs",
        "20",
        "--set",
        "batch_size=2",
        "--progress",
        "json",
    )
    assert out.returncode == 0, out.stderr
    events = _lines(out.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds and "evaluating" in kinds
    assert kinds.index("evaluating") < kinds.index("refit")  # the validation images are folded in last
    start, done = events[0], events[-1]
    assert done["refit"]["images"] == 6 and done["selection_checkpoint"].endswith("-selection.safetensors")
    assert start["settings"]["batch_size"] == 2 and start["train_images"] + start["validation_images"] == 6
    progress = next(e for e in events if e["event"] == "progress")
    assert {"epoch", "step", "losses", "lr", "eta", "elapsed", "images_per_second"} <= set(progress)
    assert done["activated"] is True and isinstance(done["version"], int) and "miou" in done["metrics"]

    models = labeler("models", str(project_dir), "--json")
    listed = json.loads(models.stdout)
    assert [(m["id"], m["active"]) for m in listed] == [(done["version"], True)]

    second = labeler("train", str(project_dir), "--plugin", "minimal", "--epochs", "1", "--activate", "never")
    assert second.returncode == 0, second.stderr
    assert "not activated" in second.stdout
    switch = labeler("models", str(project_dir), "--activate", str(done["version"] + 1))
    assert switch.returncode == 0 and "is now the active minimal model" in switch.stdout
    text = labeler("models", str(project_dir))
    assert f"* #{done['version'] + 1}" in text.stdout and f"  #{done['version']} " in text.stdout

    ev = labeler("eval", str(project_dir), "--plugin", "minimal", "--json", "--split", "all")
    assert ev.returncode == 0, ev.stderr
    report = json.loads(ev.stdout)
    assert report["images"] == 6 and report["version"] == done["version"] + 1 and "miou" in report["metrics"]
    assert report["weights"] == "final"
    # on the validation images a refit version is measured before its refit, and the output says so
    honest = labeler("eval", str(project_dir), "--plugin", "minimal", "--model-version", str(done["version"]))
    assert honest.returncode == 0, honest.stderr
    assert "measures its selection checkpoint" in honest.stdout
    assert f"miou                 {done['metric']:.4f}" in honest.stdout

    auto = labeler(
        "auto-label",
        str(project_dir),
        "--plugin",
        "minimal",
        "--undone",
        "--shard",
        "1/2",
        "--model-version",
        str(done["version"]),
        "--progress",
        "json",
    )
    assert auto.returncode == 0, auto.stderr
    lines = _lines(auto.stdout)
    assert lines[0] == {
        "v": 1,
        "job": "auto-label",
        "event": "start",
        "version": done["version"],
        "plugin": "minimal",
        "total": 1,
    }
    assert lines[-1]["event"] == "done" and lines[-1]["images"] == 1
    with Project.open(project_dir) as project:
        # images 7 and 8 are undone; 8 % 2 == 0 is shard 1 of 2
        assert project.image(8).uncertainty is not None and project.image(7).uncertainty is None
        proposed = project.annotations(states=[State.PROPOSED])
        assert {a.image_id for a in proposed} <= {8}
        assert {a.model_version for a in proposed} <= {done["version"]}


def test_no_refit_reaches_train(project_dir, monkeypatch, capsys):
    install_minimal_plugin()
    from labeler.cli import main
    from labeler.learning import training

    asked = []
    real = training.train

    def spy(*args, **kwargs):
        asked.append(kwargs["refit"])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    common = ["train", str(project_dir), "--plugin", "minimal", "--epochs", "1", "--progress", "none"]
    assert main([*common, "--no-refit"]) == 0
    assert "folding in" not in capsys.readouterr().out
    assert main(common) == 0
    assert "folding in the 1 validation image for the last 0.2 epochs" in capsys.readouterr().out
    assert asked == [False, True]
    with Project.open(project_dir) as project:
        plain, refit = project.model_versions()
        assert "selection_checkpoint" not in plain.data and "refit" not in plain.data
        assert refit.data["refit"]["images"] == 6 and (project_dir / refit.data["selection_checkpoint"]).is_file()
    helped = labeler("train", "--help")
    assert "--no-refit" in helped.stdout and "validation images" in helped.stdout


def test_user_errors_are_one_line_with_exit_2(project_dir):
    bad = labeler("train", str(project_dir), "--plugin", "minimal", "--set", "nope=1", "--epochs", "1")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "labeler train: error: plugin 'minimal' has no setting 'nope' (it has: batch_size, lr, size, width)"
    ]
    missing = labeler("train", str(project_dir), "--plugin", "nonesuch", "--epochs", "1", "--progress", "json")
    assert missing.returncode == 2
    event = _lines(missing.stdout)[-1]
    assert event["event"] == "error" and "not installed" in event["message"] and event["plugin"] == "nonesuch"
    auto = labeler("auto-label", str(project_dir), "--plugin", "minimal")
    assert auto.returncode == 2 and "no trained model" in auto.stderr
    shard = labeler("auto-label", str(project_dir), "--plugin", "minimal", "--shard", "3/2")
    assert shard.returncode == 2 and "1 <= K <= N" in shard.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_stopping_a_training_leaves_the_project_as_it_was(project_dir, sig):
    first = labeler("train", str(project_dir), "--plugin", "minimal", "--epochs", "2")
    assert first.returncode == 0, first.stderr
    with Project.open(project_dir) as project:
        before = [(v.id, v.active) for v in project.model_versions()]
    files_before = sorted(p.name for p in (project_dir / "models").iterdir())
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labeler",
            "train",
            str(project_dir),
            "--plugin",
            "minimal",
            "--time-budget",
            "60",
            "--progress",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if line and json.loads(line)["event"] == "progress":
                break
        child.send_signal(sig)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if sig == signal.SIGTERM:
        assert child.returncode == 130, err
        assert json.loads(out.splitlines()[-1])["event"] == "cancelled"
    with Project.open(project_dir) as project:
        assert [(v.id, v.active) for v in project.model_versions()] == before
    assert sorted(p.name for p in (project_dir / "models").iterdir()) == files_before


def test_eval_of_a_refit_version_loads_only_the_weights_it_measures(project_dir, monkeypatch, capsys):
    """On the validation images ``labeler eval`` loads a refit version's selection checkpoint and
    nothing else; on all done images, its final weights alone."""
    install_minimal_plugin()
    from labeler.cli import main
    from labeler.learning import checkpoints

    assert main(["train", str(project_dir), "--plugin", "minimal", "--epochs", "1", "--progress", "none"]) == 0
    loads: list[bool] = []
    real = checkpoints._load

    def spy(*args, **kwargs):
        loads.append(kwargs["selection"])
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "_load", spy)
    capsys.readouterr()
    assert main(["eval", str(project_dir), "--plugin", "minimal", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "selection" and loads == [True]
    loads.clear()
    assert main(["eval", str(project_dir), "--plugin", "minimal", "--json", "--split", "all"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "final" and loads == [False]
