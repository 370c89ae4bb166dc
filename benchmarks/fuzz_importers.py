"""Fuzz every importer with mutated real label files and count what happens.

    .venv/bin/python benchmarks/fuzz_importers.py [--cases 150] [--seed 0] [--timeout 20]
        [--code DIR]   # run another checkout's ``labeler`` (e.g. the base commit) on the same cases

Seeds are small real sets from ``$LABELER_DATA`` (or ``../shared/data``): COCO (6 images of
coco-tiny), labelme (4 fruit files and labelme's primitives), VOC (4 raccoon files), YOLO (built
from the fruit boxes) and label masks (4 membrane PNGs). Each case copies one seed, mutates it
(a JSON value or XML text swapped for a hostile one, bytes flipped, cut or inserted, a YAML or text
file rewritten, a PNG header made to claim 30000 x 30000 pixels, a label file turned into a link
to ``/etc/passwd``...), creates a project holding the seed's images and imports into it. A case
that imports is then exported to COCO and label masks, and the COCO file is read back as strict
JSON: a project must never hold a label its own exports cannot write.

Every case runs in a forked child with a memory cap (3 GiB) and a time limit, so a hang, a
``MemoryError`` or a segfault is counted, not suffered. Outcomes per format:

- ``ok``: imported, exports fine;   ``clean``: the importer's one-line error (``FormatError``,
  ``ProjectError``, ``ImageError``); ``crash``: any other exception (the type and where);
- ``poison``: imported, then an export failed or wrote what is not JSON;
- ``timeout`` / ``killed``: over the time limit / ended by a signal (memory, segfault).

The cases are the same for the same ``--seed`` whatever the code under test. The machine's load
changes only the times, not the counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

FORMATS = ("coco", "labelme", "voc", "yolo", "masks")
HOSTILE_VALUES: list[Any] = [
    2**31,
    2**63,
    10**30,
    10**400,
    -1,
    0,
    -(2**31),
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    [],
    {},
    [1, 2],
    {"a": 1},
    [[1, 2], [3]],
    "",
    "①",
    "²",
    "/etc/passwd",
    "../../../../etc/passwd",
    "/proc/self/environ",
    "x" * 5000,
    None,
    True,
    False,
    "NaN",
    "\x00",
    "a/" * 300 + "b.jpg",
]
HOSTILE_TEXT = [
    "2147483648",
    "1e400",
    "inf",
    "-inf",
    "nan",
    "Infinity",
    "-1",
    "0",
    "①",
    "²",
    "１２",
    "",
    " ",
    "99999999999999999999999",
    "/etc/passwd",
    "../../../../etc/passwd",
    "/proc/self/environ",
    "x" * 300,
    "a" * 5000 + ".jpg",
    "\u202e",
    "1.5",
    "0x10",
]


def data_dir() -> Path:
    env = os.environ.get("LABELER_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


# ---- seeds ------------------------------------------------------------------------------------


def make_seeds(data: Path, root: Path) -> dict[str, Path]:
    """One small folder per format under ``root``; returns format -> folder."""
    seeds: dict[str, Path] = {}
    # COCO: 6 images of coco-tiny with their annotations
    coco_src = data / "coco-tiny" / "val2017"
    doc = json.loads((coco_src / "instances_val2017.json").read_text())
    images = doc["images"][:6]
    ids = {im["id"] for im in images}
    folder = root / "coco"
    folder.mkdir(parents=True)
    for im in images:
        shutil.copy(coco_src / im["file_name"], folder / im["file_name"])
    doc = {
        "images": images,
        "annotations": [a for a in doc["annotations"] if a["image_id"] in ids],
        "categories": doc["categories"],
    }
    (folder / "instances.json").write_text(json.dumps(doc))
    seeds["coco"] = folder
    # labelme: 4 fruit files and the primitives (every shape type, a base64 mask)
    folder = root / "labelme"
    folder.mkdir()
    fruit = sorted((data / "fruit" / "train").glob("*.json"))[:4]
    for path in fruit:
        shutil.copy(path, folder / path.name)
        shutil.copy(path.with_suffix(".jpg"), folder / path.with_suffix(".jpg").name)
    prim = data / "labelme-examples" / "primitives"
    shutil.copy(prim / "primitives.json", folder)
    shutil.copy(prim / "primitives.jpg", folder)
    seeds["labelme"] = folder
    # VOC: 4 raccoon files, VOC layout (annotations/ beside images/)
    folder = root / "voc"
    (folder / "annotations").mkdir(parents=True)
    (folder / "images").mkdir()
    for path in sorted((data / "raccoon" / "annotations").glob("*.xml"))[:4]:
        shutil.copy(path, folder / "annotations" / path.name)
        image = data / "raccoon" / "images" / (path.stem + ".jpg")
        shutil.copy(image, folder / "images" / image.name)
    seeds["voc"] = folder
    # YOLO: the fruit boxes as YOLO labels
    folder = root / "yolo"
    (folder / "labels").mkdir(parents=True)
    (folder / "images").mkdir()
    names = ["apple", "banana", "orange"]
    (folder / "classes.txt").write_text("\n".join(names) + "\n")
    (folder / "data.yaml").write_text("nc: 3\nnames: [apple, banana, orange]\n")
    from PIL import Image

    for path in fruit:
        doc = json.loads(path.read_text())
        image = path.with_suffix(".jpg")
        shutil.copy(image, folder / "images" / image.name)
        with Image.open(image) as im:
            width, height = im.size
        lines = []
        for shape in doc["shapes"]:
            (x0, y0), (x1, y1) = shape["points"][:2]
            cls = names.index(shape["label"]) if shape["label"] in names else 0
            lines.append(
                f"{cls} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                f"{abs(x1 - x0) / width:.6f} {abs(y1 - y0) / height:.6f}"
            )
        (folder / "labels" / (path.stem + ".txt")).write_text("\n".join(lines) + "\n")
    seeds["yolo"] = folder
    # masks: 4 membrane label PNGs beside their images
    folder = root / "masks"
    (folder / "label").mkdir(parents=True)
    (folder / "image").mkdir()
    for i in range(4):
        shutil.copy(data / "membrane" / "label" / f"{i}.png", folder / "label" / f"{i}.png")
        shutil.copy(data / "membrane" / "image" / f"{i}.png", folder / "image" / f"{i}.png")
    seeds["masks"] = folder
    return seeds


# ---- mutations --------------------------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:40]):
            out += _paths(v, (*prefix, i))
    return out


def _set(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node[path[0]] = _set(node[path[0]], path[1:], value)
    return node


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    buf = bytearray(data)
    if choice == 0 and buf:  # flip some bytes
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif choice == 1 and buf:  # cut
        del buf[rng.randrange(len(buf)) :]
    elif choice == 2:  # insert garbage
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    else:  # a binary file under the same name
        buf = bytearray(os.urandom(rng.randint(1, 2000)))
    return bytes(buf)


def mutate_json(path: Path, rng: random.Random) -> str:
    if rng.random() < 0.25:
        path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        return "json bytes"
    doc = json.loads(path.read_text())
    if rng.random() < 0.05:
        path.write_text(_deep(rng.choice([2000, 100_000])))
        return "json deep nesting"
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(_paths(doc)[1:] or [()])
        doc = _set(doc, target, rng.choice(HOSTILE_VALUES))
    path.write_text(json.dumps(doc))
    return "json value"


def mutate_xml(path: Path, rng: random.Random) -> str:
    import xml.etree.ElementTree as ET

    if rng.random() < 0.25:
        path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        return "xml bytes"
    tree = ET.parse(path)
    elements = [e for e in tree.getroot().iter() if e.text is not None and e.text.strip()]
    for _ in range(rng.randint(1, 3)):
        rng.choice(elements).text = rng.choice(HOSTILE_TEXT)
    tree.write(path, encoding="utf-8")
    return "xml text"


YAML_VARIANTS = [
    "names:\n  - apple\n  - banana\n  - orange\n",
    "names:\n  0: apple\n  1: banana\n  2: orange\n",
    "names: ['apple', \"banana\", orange]  # comment\n",
    "names: {0: apple, 1: banana, 2: orange}\n",
    "names: [apple, 'it''s', \"q\\\"uote\"]\n",
    "path: ../x\ntrain: images\nnames:\n  0: 'apple: red'\n  1: banana # yellow\n  2: orange\n",
    "names: &a [apple, banana, orange]\nother: *a\n",
    "names:\n- apple\n- banana\n- orange\n",
    "names: 5\n",
    "names: [[a], {b: c}]\n",
    "names:\n  x: apple\n",
    "names: [apple, banana\n",
    "names: !!python/object/apply:os.system ['true']\n",
    "a: &a [*a]\n",
    "\x00\xff\xfe",
    "names:\n  0: apple\n  2: orange\n",
    "names: [1, 2, 3]\n",
    "names: {0: a, 0: b}\n",
]


def mutate_yolo(folder: Path, rng: random.Random) -> str:
    choice = rng.randrange(6)
    labels = sorted((folder / "labels").glob("*.txt"))
    if choice == 0:
        (folder / "data.yaml").write_text(rng.choice(YAML_VARIANTS), encoding="utf-8", errors="surrogateescape")
        (folder / "classes.txt").unlink()
        return "yaml"
    if choice == 1:
        target = rng.choice([folder / "classes.txt", folder / "data.yaml"])
        target.write_bytes(mutate_bytes(target.read_bytes(), rng))
        if target.name == "data.yaml":
            (folder / "classes.txt").unlink()
        return "class file bytes"
    if choice == 2:
        path = rng.choice(labels)
        path.unlink()
        path.symlink_to(rng.choice(["/etc/passwd", "/proc/self/environ", "/etc/hostname"]))
        return "label symlink out"
    path = rng.choice(labels)
    if choice == 3:
        path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        return "label bytes"
    lines = path.read_text().splitlines()
    i = rng.randrange(len(lines))
    tokens = lines[i].split()
    for _ in range(rng.randint(1, 3)):
        tokens[rng.randrange(len(tokens))] = rng.choice(HOSTILE_TEXT)
    lines[i] = " ".join(tokens)
    path.write_text("\n".join(lines) + "\n")
    return "label tokens"


def _png_with_size(data: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR claiming ``width`` x ``height`` (CRC fixed, data left as it is)."""
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return data[:16] + bytes(ihdr) + crc + data[33:]


def _bomb_png(width: int, height: int) -> bytes:
    """A small, valid PNG of ``width`` x ``height`` zeros (8-bit gray): megabytes become kilobytes."""
    row = b"\x00" + b"\x00" * width
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def mutate_masks(folder: Path, rng: random.Random, options: dict[str, Any]) -> str:
    choice = rng.randrange(4)
    path = rng.choice(sorted((folder / "label").glob("*.png")))
    if choice == 0:
        path.write_bytes(_png_with_size(path.read_bytes(), 30000, 30000))
        return "png header size"
    if choice == 1:
        path.write_bytes(_BOMB)
        return "png bomb"
    if choice == 2:
        options["values"] = rng.choice(
            [
                "0=membrane,255=cell",
                "0=a,²=b",
                "①=x",
                "0=a,0=b",
                "=x",
                "0=",
                "x",
                "0=a,70000=b",
                "0=_background_,255=cell",
                "0=a\n,255=b",
            ]
        )
        return "values"
    path.write_bytes(mutate_bytes(path.read_bytes(), rng))
    return "png bytes"


_BOMB = b""


def mutate(fmt: str, folder: Path, rng: random.Random, options: dict[str, Any]) -> str:
    if fmt == "coco":
        return mutate_json(folder / "instances.json", rng)
    if fmt == "labelme":
        target = rng.choice(sorted(folder.glob("*.json")))
        if rng.random() < 0.1:  # a mask shape holding a bomb
            doc = json.loads(target.read_text())
            import base64

            doc["shapes"].append(
                {
                    "label": "m",
                    "points": [[0, 0], [5, 5]],
                    "shape_type": "mask",
                    "mask": base64.b64encode(_BOMB).decode(),
                }
            )
            target.write_text(json.dumps(doc))
            return "labelme mask bomb"
        return mutate_json(target, rng)
    if fmt == "voc":
        return mutate_xml(rng.choice(sorted((folder / "annotations").glob("*.xml"))), rng)
    if fmt == "yolo":
        return mutate_yolo(folder, rng)
    return mutate_masks(folder, rng, options)


# ---- one case ---------------------------------------------------------------------------------

IMAGE_DIRS = {"coco": ".", "labelme": ".", "voc": "images", "yolo": "images", "masks": "image"}


def run_case(fmt: str, folder: Path, project_dir: Path, options: dict[str, Any]) -> str:
    """The outcome of importing ``folder`` (then exporting) in this process."""
    from labeler.core.images import ImageError
    from labeler.core.store import Project, ProjectError
    from labeler.formats import export_annotations, import_annotations
    from labeler.formats.errors import FormatError

    clean = (FormatError, ProjectError, ImageError)
    project = Project.create(project_dir)
    images_folder = folder / IMAGE_DIRS[fmt]
    project.add_images(sorted(p for p in images_folder.iterdir() if p.suffix.lower() in (".jpg", ".png")))
    source = (
        folder / "instances.json"
        if fmt == "coco"
        else folder / "label"
        if fmt == "masks"
        else folder / "annotations"
        if fmt == "voc"
        else folder
    )
    try:
        import_annotations(project, source, format=fmt, **options)
    except clean:
        return "clean"
    except BaseException as exc:  # noqa: BLE001 - counting is the point
        return "crash " + _where(exc)
    try:
        export_annotations(project, project_dir / "out.json", format="coco")
        json.loads((project_dir / "out.json").read_text(), parse_constant=_refuse)
        export_annotations(project, project_dir / "masks", format="masks")
    except clean:
        return "ok"  # an export that says clearly why it cannot write is not poison
    except BaseException as exc:  # noqa: BLE001
        return "poison " + _where(exc)
    return "ok"


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "labeler" in f.filename] or frames
    last = inside[-1] if inside else None
    place = f"{Path(last.filename).name}:{last.name}" if last else "?"
    return f"{type(exc).__name__} in {place}"


def forked(fmt: str, folder: Path, project_dir: Path, options: dict[str, Any], timeout: float) -> str:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
            outcome = run_case(fmt, folder, project_dir, options)
        except BaseException as exc:  # noqa: BLE001
            outcome = "crash " + _where(exc)
        os.write(write, outcome.encode()[:500])
        os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return "timeout"
        time.sleep(0.01)
    text = os.read(read, 1000).decode()
    os.close(read)
    if os.WIFSIGNALED(status):
        return f"killed (signal {os.WTERMSIG(status)})"
    return text or "killed (no result)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=150, help="cases per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--code", help="a checkout whose labeler package to test instead of the installed one")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--verbose", action="store_true", help="print every case that is not ok or clean")
    args = parser.parse_args()
    if args.code:
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, os.path.abspath(args.code))
    import labeler.formats

    print(f"code under test: {Path(labeler.formats.__file__).parents[1]}")
    data = data_dir()
    if not data.is_dir():
        print(f"no data at {data} (set LABELER_DATA)")
        return 2
    global _BOMB
    _BOMB = _bomb_png(30000, 30000)
    totals: dict[str, collections.Counter[str]] = {}
    details: dict[str, collections.Counter[str]] = {}
    with tempfile.TemporaryDirectory(prefix="fuzz-importers-") as tmp:
        seeds = make_seeds(data, Path(tmp) / "seeds")
        for fmt in args.formats.split(","):
            rng = random.Random(f"{args.seed}-{fmt}")
            totals[fmt] = collections.Counter()
            details[fmt] = collections.Counter()
            started = time.monotonic()
            for n in range(args.cases):
                case = Path(tmp) / f"{fmt}-{n}"
                shutil.copytree(seeds[fmt], case / "src", symlinks=True)
                options: dict[str, Any] = {}
                kind = mutate(fmt, case / "src", rng, options)
                outcome = forked(fmt, case / "src", case / "project", options, args.timeout)
                head = outcome.split(" ", 1)[0]
                totals[fmt][head] += 1
                if head not in ("ok", "clean"):
                    details[fmt][f"{outcome} [{kind}]"] += 1
                    if args.verbose:
                        print(f"  {fmt} #{n} ({kind}): {outcome}", flush=True)
                shutil.rmtree(case, ignore_errors=True)
            seconds = time.monotonic() - started
            counts = ", ".join(f"{k} {v}" for k, v in sorted(totals[fmt].items()))
            print(f"{fmt:8s} {args.cases} cases in {seconds:.0f} s: {counts}", flush=True)
            for line, count in details[fmt].most_common():
                print(f"    {count:4d}  {line}")
    bad = sum(v for c in totals.values() for k, v in c.items() if k not in ("ok", "clean"))
    cases = sum(sum(c.values()) for c in totals.values())
    print(f"total: {cases} cases, {bad} not ok or clean ({100 * bad / max(cases, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
