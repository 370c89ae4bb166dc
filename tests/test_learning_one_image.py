"""Auto-labelling one image with the active model version, kept loaded between images."""

from __future__ import annotations

from pathlib import Path

import pytest
from learning_support import minimal_plugin, synthetic_project

from labeler.core.annotation import State
from labeler.core.store import ProjectError
from labeler.learning.one_image import OneImageLabeller
from labeler.learning.training import train


def test_one_image_at_a_time_loads_the_model_once_per_active_version(backend, tmp_path: Path) -> None:
    project = synthetic_project(backend, tmp_path / "proj", images=8, done=5)
    labeller = OneImageLabeller()
    with pytest.raises(ProjectError, match="no trained model"):
        labeller.label(project, "minimal", 7)
    plugin = minimal_plugin()
    first = train(project, plugin, epochs=30).version
    assert first is not None
    written = labeller.label(project, "minimal", 7)
    assert written == len(project.annotations(7, states=[State.PROPOSED])) > 0
    labeller.label(project, "minimal", 8)
    assert labeller.loads == 1  # the second image reused the loaded model
    second = train(project, plugin, epochs=30, activate="always").version
    assert second is not None and project.active_model_version("minimal").id == second.id
    labeller.label(project, "minimal", 7)
    assert labeller.loads == 2  # a new active version is loaded
    assert {a.model_version for a in project.annotations(7, states=[State.PROPOSED])} == {second.id}
    project.close()
