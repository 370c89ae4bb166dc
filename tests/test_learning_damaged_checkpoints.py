"""Damaged checkpoints (#18 item 1): one line naming the version and its file, the project stays
usable, the earlier versions are offered; the JSON beside a checkpoint is read and checked."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from learning_support import install_minimal_plugin, minimal_plugin, synthetic_project

from labeler.learning.autolabel import load_model
from labeler.learning.checkpoints import CheckpointError, selection_checkpoint
from labeler.learning.training import train


def _safetensors_with(header: dict | bytes, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


def _damage(path: Path, how: str) -> None:
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "random":
        path.write_bytes(os.urandom(len(good)))
    elif how == "text":
        path.write_text("these are not weights\n")
    elif how == "pickle":
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    elif how == "torch_save":
        import torch

        torch.save({"weight": torch.zeros(3)}, path)
    elif how == "header_length":
        path.write_bytes((10**12).to_bytes(8, "little") + good[8:])
    elif how == "header_json":
        path.write_bytes(_safetensors_with(b"{not json" + b" " * 20, b"\0" * 16))
    elif how == "offsets":
        path.write_bytes(
            _safetensors_with({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}, b"\0" * 16)
        )
    elif how == "dtype":
        path.write_bytes(_safetensors_with({"w": {"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16))
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise AssertionError(how)


DAMAGE = [
    "truncated",
    "random",
    "text",
    "pickle",
    "torch_save",
    "header_length",
    "header_json",
    "offsets",
    "dtype",
    "empty",
]


@pytest.fixture(scope="module")
def two_versions(backend, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with two minimal versions (both refit: each has a selection checkpoint)."""
    root = tmp_path_factory.mktemp("ck") / "proj"
    project = synthetic_project(backend, root, images=8, done=6)
    plugin = minimal_plugin()
    train(project, plugin, epochs=4)
    train(project, plugin, epochs=4, activate="always")
    project.close()
    return root


@pytest.fixture
def project_copy(backend, two_versions: Path, tmp_path: Path) -> Path:
    target = tmp_path / "proj"
    backend.copy(two_versions, target)
    return target


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("which", ["final", "selection"])
def test_damaged_checkpoint_names_the_version_and_offers_the_earlier_one(backend, project_copy, how, which):
    with backend.open(project_copy) as project:
        active = project.active_model_version("minimal")
        assert active is not None and active.id == 2
        rel = active.checkpoint if which == "final" else selection_checkpoint(active)
        assert rel is not None
        _damage(project.root / rel, how)
        with pytest.raises(CheckpointError) as caught:
            load_model(project, "minimal", selection=which == "selection")
        text = str(caught.value)
        assert "model version 2" in text and Path(rel).name in text and "\n" not in text
        assert ("selection checkpoint" in text) == (which == "selection")
        assert "--activate 1" in text and "#1" in text
        # the rest of the project is usable: the earlier version loads and the labels are there
        assert load_model(project, "minimal", version_id=1).version.id == 1
        assert project.image_count(done=True) == 6


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    target = install_minimal_plugin()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "labeler", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("which", ["final", "selection"])
def test_cli_eval_and_auto_label_say_which_file_is_damaged_and_train_goes_on(backend, project_copy, which):
    project_args = backend.args(project_copy)
    with backend.open(project_copy) as project:
        active = project.active_model_version("minimal")
        rel = active.checkpoint if which == "final" else selection_checkpoint(active)
    _damage(project_copy / rel, "truncated")
    verb_args = {
        "eval": [
            "eval",
            *project_args,
            "--plugin",
            "minimal",
            "--split",
            "validation" if which == "selection" else "all",
        ],
        "auto-label": ["auto-label", *project_args, "--plugin", "minimal", "--all"],
    }
    for verb, args in verb_args.items():
        if verb == "auto-label" and which == "selection":
            continue  # auto-labelling uses the final weights only
        out = _cli(*args)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"labeler {verb}: error: model version 2" in lines[0] and Path(rel).name in lines[0]
        assert f"labeler models {' '.join(project_args)} --activate 1" in lines[0]
    # training warm-starts from the damaged active version: it says so and trains from scratch,
    # and measures the damaged active version as "could not be measured"
    out = _cli("train", *project_args, "--plugin", "minimal", "--epochs", "2", "--progress", "none")
    assert out.returncode == 0, out.stderr
    if which == "final":
        assert "not warm-starting from version 2" in out.stdout
    else:
        assert "the active version 2 could not be measured" in out.stdout
    out = _cli("train", *project_args, "--plugin", "minimal", "--epochs", "2", "--fresh", "--progress", "none")
    assert out.returncode == 0, out.stderr


def test_the_json_beside_a_checkpoint_is_read_and_checked(backend, project_copy):
    with backend.open(project_copy) as project:
        active = project.active_model_version("minimal")
        meta_path = (project.root / active.checkpoint).with_suffix(".json")
        meta = json.loads(meta_path.read_text())
        meta["classes"] = [{"id": 7, "name": "other"}]
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=r"is for categories \[7\]"):
            load_model(project, "minimal")
        meta_path.write_text("{broken")
        with pytest.raises(CheckpointError, match="not valid JSON"):
            load_model(project, "minimal")
        meta_path.unlink()  # a project that lost the JSON still loads
        assert load_model(project, "minimal").version.id == 2
