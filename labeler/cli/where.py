"""Where a verb's project is: a project folder, or a PostgreSQL URL with this machine's image root."""

from __future__ import annotations

import argparse
import os
from typing import Any

IMAGE_ROOT_ENV = "LABELER_IMAGE_ROOT"


def add_image_root(parser: Any) -> None:
    """The ``--image-root`` option of a verb whose project may be a ``postgresql://`` URL."""
    parser.add_argument(
        "--image-root",
        metavar="DIR",
        help=f"for a postgresql:// project: the folder its image paths are relative to on this machine "
        f"(default ${IMAGE_ROOT_ENV})",
    )


def image_root(args: argparse.Namespace) -> str | None:
    return getattr(args, "image_root", None) or os.environ.get(IMAGE_ROOT_ENV) or None


def open_project(args: argparse.Namespace) -> Any:
    """The project ``args.project`` names, opened (a :class:`~labeler.core.store.Project`)."""
    from labeler.core.store import Project

    return Project.open(args.project, image_root=image_root(args))
