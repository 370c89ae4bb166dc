"""``labeler import`` and ``labeler export``: labels in and out of a project in the common formats."""

from __future__ import annotations

import argparse
from typing import Any

from labeler.cli.where import add_image_root, open_project

FORMAT_NAMES = ("coco", "labelme", "voc", "yolo", "masks")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="import labels (COCO, labelme, VOC, YOLO, label masks) into a project",
        description="Import labels from SOURCE into the project. The whole import is one transaction: "
        "on any error the project is left as it was. Images the labels name are matched to the project's "
        "(labelme adds new ones only with --add-images; the other formats add them), and marked done "
        "(unless --no-done).",
    )
    p.add_argument("project", help="the project folder (create it with 'labeler init')")
    add_image_root(p)
    p.add_argument("source", help="a label file, or a folder of them")
    p.add_argument("--format", choices=FORMAT_NAMES, help="the format of SOURCE (default: guessed)")
    p.add_argument(
        "--images", metavar="DIR", help="where to find the images the labels name when their own paths do not resolve"
    )
    p.add_argument(
        "--values",
        metavar="V=NAME,...",
        help="masks: pixel value to class name, e.g. 0=membrane,255=cell, or a file of class "
        "names, one per line for values 0, 1, ... (default: each value is a class named by its number)",
    )
    p.add_argument("--ignore", type=int, metavar="VALUE", help="masks: the pixel value that means 'no label', e.g. 11")
    p.add_argument("--no-done", action="store_true", help="do not mark the labelled images done")
    p.add_argument(
        "--add-images",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the images the labels name that are not in the project yet (default: labelme "
        "matches the project's images, by relative path then file name, and skips the others; "
        "the other formats add them)",
    )
    p.set_defaults(run=run_import)

    p = sub.add_parser(
        "export",
        help="export a project's labels (COCO, labelme, VOC, YOLO, label masks)",
        description="Export the accepted labels of done and labelled images. OUT is a .json file for "
        "COCO and a folder for the other formats; it is written aside and moved into place when complete.",
    )
    p.add_argument("project", help="the project folder")
    add_image_root(p)
    p.add_argument("out", help="the file (COCO) or folder (other formats) to write")
    p.add_argument("--format", choices=FORMAT_NAMES, help="the format to write (default: coco if OUT ends in .json)")
    p.add_argument(
        "--masks", choices=("rle", "polygon"), help="coco: write masks as compressed RLE (default) or polygons"
    )
    p.add_argument(
        "--file-names",
        choices=("relative", "name"),
        help="coco: image paths relative to OUT's folder (default) or bare file names",
    )
    p.add_argument(
        "--include-proposals", action="store_true", help="also write the models' pending proposals (with their score)"
    )
    p.add_argument(
        "--values",
        metavar="V=NAME,...",
        help="masks: the pixel value of each class, e.g. 0=membrane,255=cell "
        "(default: 1..N, or the class names if they are numbers)",
    )
    p.add_argument(
        "--ignore", type=int, metavar="VALUE", help="masks: the value for ignored and unlabelled pixels (default 255)"
    )
    p.set_defaults(run=run_export)


def run_import(args: argparse.Namespace) -> int:
    from labeler.cli import CliError
    from labeler.cli.progress import ProgressBar
    from labeler.formats import detect_format, import_annotations

    fmt = args.format or detect_format(args.source)
    options: dict[str, Any] = {}
    if args.values is not None or args.ignore is not None:
        if fmt != "masks":
            raise CliError("--values and --ignore apply to --format masks only")
        options = {"values": args.values, "ignore": args.ignore}
    with open_project(args) as project:
        bar = ProgressBar(f"importing {fmt}")
        try:
            report = import_annotations(
                project,
                args.source,
                format=fmt,
                images_dir=args.images,
                mark_done=not args.no_done,
                progress=bar,
                add_images=args.add_images,
                **options,
            )
        finally:
            bar.close()
    print(f"imported {fmt}: {report.summary()}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from labeler.cli import CliError
    from labeler.cli.progress import ProgressBar
    from labeler.formats import export_annotations

    fmt = args.format or ("coco" if args.out.lower().endswith(".json") else None)
    if fmt is None:
        raise CliError("give --format (coco, labelme, voc, yolo or masks)")
    options: dict[str, Any] = {}
    if args.masks is not None or args.file_names is not None:
        if fmt != "coco":
            raise CliError("--masks and --file-names apply to --format coco only")
        options |= {"masks": args.masks, "file_names": args.file_names}
    if args.values is not None or args.ignore is not None:
        if fmt != "masks":
            raise CliError("--values and --ignore apply to --format masks only")
        options |= {"values": args.values, "ignore": args.ignore}
    with open_project(args) as project:
        bar = ProgressBar(f"exporting {fmt}")
        try:
            report = export_annotations(
                project, args.out, format=fmt, include_proposals=args.include_proposals, progress=bar, **options
            )
        finally:
            bar.close()
    print(f"exported {fmt}: {report.summary()}")
    return 0
