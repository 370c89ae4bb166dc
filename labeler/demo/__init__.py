"""``labeler demo``: a small generated project with known labels, and the train / auto-label loop
run on it headless (:mod:`labeler.demo.loop`). No Qt here; the window is opened by the CLI."""

from labeler.demo.project import DemoProject, build_demo_project
from labeler.demo.scenes import SHAPES, Scene, make_scene, make_scenes

__all__ = ["SHAPES", "DemoProject", "Scene", "build_demo_project", "make_scene", "make_scenes"]
