"""A team on one project in PostgreSQL: several annotators at once, and how fast each sees the others.

    .venv/bin/python benchmarks/bench_teams.py [--url postgresql://HOST/DB] [--annotators 4]
            [--images 200] [--seconds 15] [--json OUT]

Without ``--url`` a throwaway server is started from the system's PostgreSQL binaries (the test
suite's ``tests/pg_server.py``) into a temporary folder, with a new database; with it, the
database must be empty (a new project is made in it). A project of ``--images`` small generated
PNGs is made; then ``--annotators`` processes, each with its own connection as a desktop has,
work for ``--seconds``: take an image, say they have it open (presence), draw five boxes one by
one, edit one of them (saved with its revision), mark the image done, next. Meanwhile this
process, on a connection of its own, writes a probe label every 100 ms and measures how long it
takes until a second connection listening to the project's change channel
(:class:`labeler.core.live.ChangeListener`, what the window uses) hears it: what a colleague
waits to see an edit. Last, two connections save the same annotation from the same revision: the
later save must be refused (``StaleAnnotationError``) and the earlier one stand.

Printed: edits per second over all annotators and per annotator, the median and 95th percentile
of one edit's round trip (add or update, committed), of marking done, and of the probe's
change-to-notification latency; and the conflict check. One run on a loaded 2-core machine is
noisy: quote medians, and what else ran.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.live import ChangeListener
from labeler.core.store import Project, StaleAnnotationError

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@contextmanager
def databases(server_url: str | None) -> Iterator[Callable[[str], str]]:
    """Yields ``new(name)``, which makes a new, empty database and returns its URL: on the server
    of ``server_url`` (its user may create databases), or, without it, on a throwaway server
    started from the system's PostgreSQL binaries (``tests/pg_server.py``) and stopped after."""
    if server_url is not None:
        import psycopg

        def new(name: str) -> str:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return urlsplit(server_url)._replace(path=f"/{name}").geturl()

        yield new
        return
    sys.path.insert(0, str(REPO / "tests"))
    import pg_server

    try:
        server = pg_server.start()
    except pg_server.Unavailable as exc:
        raise SystemExit(f"{Path(sys.argv[0]).name}: no PostgreSQL server: {exc} (or pass a URL)") from None
    try:
        yield server.create_database
    finally:
        server.stop()


def make_project(url: str, folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"im{i:05d}.png")
    with Project.create(url, image_root=folder) as project:
        project.add_folder(folder)
        project.add_category("cell")


def annotator(url: str, folder: str, rank: int, world: int, seconds: float, out: Any) -> None:
    """One desktop: its share of the images, labelled until ``seconds`` have passed."""
    edits: list[float] = []
    dones: list[float] = []
    with Project.open(url, image_root=folder) as project:
        ids = [r.id for r in project.images()][rank::world]
        session = f"bench-{rank}"
        end = time.perf_counter() + seconds
        for image_id in ids:
            if time.perf_counter() > end:
                break
            project.set_presence(session, image_id)
            added = []
            for k in range(5):
                t0 = time.perf_counter()
                added.append(
                    project.add_annotation(
                        Annotation(
                            image_id=image_id,
                            category_id=1,
                            kind=Kind.BOX,
                            box_xywh=(2.0 + 8 * k, 2.0, 6.0, 6.0),
                            state=State.ACCEPTED,
                        )
                    )
                )
                edits.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            project.update_annotation(replace(added[0], box_xywh=(1.0, 1.0, 7.0, 7.0)))
            edits.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            project.set_done(image_id)
            dones.append(time.perf_counter() - t0)
        project.clear_presence(session)
    out.put({"rank": rank, "edits": edits, "dones": dones})


def probe_latency(url: str, folder: Path, seconds: float) -> list[float]:
    """Seconds from a committed write on one connection to its announcement on another."""
    listener = ChangeListener(url)
    latencies: list[float] = []
    try:
        with Project.open(url, image_root=folder) as writer:
            image_id = next(iter(writer.images())).id
            mine = writer.connection_id
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                listener.wait(0.0)  # drop what the annotators announced meanwhile
                t0 = time.perf_counter()
                writer.add_annotation(
                    Annotation(image_id=image_id, category_id=1, kind=Kind.BOX, box_xywh=(1, 1, 2, 2))
                )
                heard = False
                while not heard and time.perf_counter() - t0 < 5.0:
                    heard = any(c.writer == mine for c in listener.wait(1.0))
                if heard:
                    latencies.append(time.perf_counter() - t0)
                time.sleep(0.1)
    finally:
        listener.close()
    return latencies


def conflict_check(url: str, folder: Path) -> bool:
    """Two desktops save the same annotation from the same revision: the later one is refused."""
    with Project.open(url, image_root=folder) as a, Project.open(url, image_root=folder) as b:
        image_id = next(iter(a.images())).id
        stored = a.add_annotation(Annotation(image_id=image_id, category_id=1, kind=Kind.BOX, box_xywh=(3, 3, 4, 4)))
        seen_by_b = next(x for x in b.annotations(image_id) if x.id == stored.id)
        a.update_annotation(replace(stored, box_xywh=(5, 5, 4, 4)))
        try:
            b.update_annotation(replace(seen_by_b, box_xywh=(9, 9, 4, 4)))
        except StaleAnnotationError:
            kept = next(x for x in a.annotations(image_id) if x.id == stored.id)
            return kept.box_xywh == (5, 5, 4, 4)
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an empty PostgreSQL database (default: a throwaway server)")
    ap.add_argument("--annotators", type=int, default=4)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    with ExitStack() as stack:
        url = args.url or stack.enter_context(databases(None))("bench_teams")
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="labeler-teams-"))
        folder = Path(tmp) / "images"
        make_project(url, folder, args.images)
        queue: Any = mp.get_context("spawn").Queue()
        workers = [
            mp.get_context("spawn").Process(
                target=annotator, args=(url, str(folder), r, args.annotators, args.seconds, queue)
            )
            for r in range(args.annotators)
        ]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        time.sleep(1.0)  # let them connect before probing
        latencies = probe_latency(url, folder, max(args.seconds - 2.0, 1.0))
        results = [queue.get(timeout=args.seconds + 120) for _ in workers]
        for w in workers:
            w.join()
        wall = time.perf_counter() - t0
        conflict_ok = conflict_check(url, folder)

    edits = [e for r in results for e in r["edits"]]
    dones = [d for r in results for d in r["dones"]]
    busy = max(sum(r["edits"]) + sum(r["dones"]) for r in results)
    figures = {
        "annotators": args.annotators,
        "edits": len(edits),
        "edits_per_second": len(edits) / busy if busy else 0.0,
        "edits_per_second_per_annotator": len(edits) / busy / args.annotators if busy else 0.0,
        "edit_ms_median": 1000 * statistics.median(edits) if edits else float("nan"),
        "edit_ms_p95": 1000 * percentile(edits, 95),
        "done_ms_median": 1000 * statistics.median(dones) if dones else float("nan"),
        "images_done": len(dones),
        "notify_ms_median": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "notify_ms_p95": 1000 * percentile(latencies, 95),
        "probes": len(latencies),
        "stale_save_refused": conflict_ok,
        "wall_seconds": wall,
    }
    print(
        f"{args.annotators} annotators for {args.seconds:g} s: {figures['edits']} edits, "
        f"{figures['images_done']} images done; {figures['edits_per_second']:.0f} edits/s in all "
        f"({figures['edits_per_second_per_annotator']:.0f} per annotator)"
    )
    print(
        f"one edit (add or update, committed): median {figures['edit_ms_median']:.1f} ms, "
        f"95th percentile {figures['edit_ms_p95']:.1f} ms; mark done median {figures['done_ms_median']:.1f} ms"
    )
    print(
        f"a colleague hears an edit (commit to notification, {figures['probes']} probes under that load): "
        f"median {figures['notify_ms_median']:.1f} ms, 95th percentile {figures['notify_ms_p95']:.1f} ms"
    )
    print(f"a save over a newer revision refused, the earlier edit kept: {'yes' if conflict_ok else 'NO'}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if conflict_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
