"""``labeler init``, ``labeler add`` and ``labeler info``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from labeler.cli.progress import ProgressBar
from labeler.cli.where import add_image_root, image_root, open_project
from labeler.core.pg import is_database_url, redact


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="create a project for a folder of images",
        description="Create a project folder and add the images of DIR (read lazily, never copied).",
    )
    p.add_argument(
        "project",
        help="the project folder to create (may exist, then images are added), "
        "or a postgresql://HOST/DB URL for a team's project",
    )
    add_image_root(p)
    p.add_argument("--images", metavar="DIR", help="folder of images to add (searched recursively)")
    p.add_argument("--classes", metavar="A,B,C", help="comma-separated category names")
    p.set_defaults(run=run_init)

    p = sub.add_parser(
        "add",
        help="add new image files to a project (incremental)",
        description="Add image files, or the images under folders (recursively), to the project. "
        "With no PATH the project folder is rescanned. Images already in the project "
        "and every label are kept as they are.",
    )
    p.add_argument("project")
    add_image_root(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders (default: the project folder)")
    p.set_defaults(run=run_add)

    p = sub.add_parser("info", help="what a project holds", description="Counts of images, categories, labels, models.")
    p.add_argument("project")
    add_image_root(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=run_info)


def run_init(args: argparse.Namespace) -> int:
    from labeler.cli import CliError
    from labeler.core.store import Project

    # Check the input before anything is written: bad input never leaves a half-made project.
    images = Path(args.images) if args.images else None
    if images is not None and not images.is_dir():
        raise CliError(f"--images {images}: {'is a file, not a folder' if images.exists() else 'no such folder'}")
    names = [n.strip() for n in (args.classes or "").split(",") if n.strip()]
    if is_database_url(args.project):  # a team's project: the images' root is this machine's
        root = image_root(args) or (str(images) if images is not None else None)
        if root is None:
            raise CliError(
                f"{redact(args.project)}: give the folder the image paths are relative to (--image-root or --images)"
            )
        project = Project.create(args.project, exist_ok=True, image_root=root)
        shown = redact(args.project)
    else:
        target = Path(args.project)
        if target.exists() and not target.is_dir():
            raise CliError(f"{target} is a file, not a folder")
        try:
            project = Project.create(target, exist_ok=True)
        except PermissionError as exc:
            raise CliError(f"cannot create a project at {target}: {exc.strerror or exc}") from exc
        shown = str(project.root)
    with project:
        added = 0
        before = project.image_count()
        # one transaction: a killed or interrupted init adds all of its classes and images or none
        with project.transaction():
            for name in names:
                project.ensure_category(name)
            if images is not None:
                with ProgressBar("adding images") as bar:
                    project.add_folder(images, progress=bar)
        added = project.image_count() - before
        if before == 0 and added:  # added in natural order to an empty project: the list opens unsorted
            from labeler.core.image_index import remember_id_order

            remember_id_order(project)
        print(f"{shown}: {project.image_count()} images ({added} new), {len(project.categories())} categories")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from labeler.cli import CliError
    from labeler.core.images import is_image_file
    from labeler.core.store import list_image_files

    with open_project(args) as project:
        paths = [Path(p) for p in args.paths] or [project.root]
        files: list[Path] = []
        for path in paths:  # checked before anything is added
            if path.is_dir():
                files += list_image_files(path)
            elif path.is_file() and is_image_file(path):
                files.append(path)
            else:
                raise CliError(f"{path}: {'not an image file' if path.exists() else 'no such file or folder'}")
        before = project.image_count()
        with ProgressBar("adding images") as bar:
            project.add_images(files, progress=bar)
        added = project.image_count() - before
        print(
            f"{project.root}: {added} new image{'' if added == 1 else 's'} "
            f"({len(files) - added} already there), {project.image_count()} in all"
        )
    return 0


def project_summary(project: Any) -> dict[str, Any]:
    """Plain counts for ``info`` (and the GUI's status bar)."""
    from labeler.core.annotation import State

    counts = {s.value: 0 for s in State}
    for per_image in project.annotation_counts().values():
        for state, n in per_image.items():
            counts[state] += n
    return {
        "project": str(project.root),
        "images": project.image_count(),
        "done": project.image_count(done=True),
        "categories": [
            {"id": c.id, "name": c.name, "color": "#{:02x}{:02x}{:02x}".format(*c.color)} for c in project.categories()
        ],
        "annotations": counts,
        "model_versions": [
            {"id": v.id, "plugin": v.plugin, "active": v.active, "metrics": v.metrics} for v in project.model_versions()
        ],
    }


def run_info(args: argparse.Namespace) -> int:

    with open_project(args) as project:
        summary = project_summary(project)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"project     {summary['project']}")
    print(f"images      {summary['images']} ({summary['done']} done)")
    print("categories  " + (", ".join(c["name"] for c in summary["categories"]) or "none"))
    a = summary["annotations"]
    print(f"labels      {a['accepted']} accepted, {a['proposed']} proposed, {a['rejected']} rejected")
    for v in summary["model_versions"]:
        metrics = ", ".join(f"{k} {val:.3f}" for k, val in v["metrics"].items() if isinstance(val, (int, float)))
        print(f"model       #{v['id']} {v['plugin']}{' (active)' if v['active'] else ''}: {metrics}")
    return 0
