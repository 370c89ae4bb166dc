"""A team under load on one project: many writers at once, auto-label by shards, a writer killed.

    .venv/bin/python benchmarks/bench_team_load.py [writers|shards|kill|all] [--server URL]
            [--writers 8] [--edits 500] [--images 200] [--shards 4] [--kills 3] [--json OUT]

Without ``--server`` a throwaway PostgreSQL server is started (``tests/pg_server.py``); with it,
new databases are made on that server (its user needs CREATEDB). Each part runs on PostgreSQL
and, where the question is how the embedded backend compares, on a SQLite project folder too.

- ``writers``: ``--writers`` processes each make ``--edits`` edits of one project at once: add a
  box, edit it (saved with its revision), accept or reject one of the proposals stored before
  (``Project.set_states``, what the window's accept / reject call), and every 25th edit, in
  pairs, a deliberate conflict: both processes of a pair read one shared annotation, wait for
  each other, and both save it from the revision they read. Every edit a process saw commit is
  written to its acknowledgement file after the commit. Checked after: the edit log holds exactly
  the acknowledged edits (none lost, none extra), the stored states and geometries are the
  acknowledged ones, and in each conflict round exactly one save stood and the other raised
  ``StaleAnnotationError`` (refused + applied = attempts). Printed: edits per second over all
  writers, on PostgreSQL and on SQLite.
- ``shards``: a segmenter trained for a few seconds on a generated project of ``--images``
  32 x 32 images, then ``labeler auto-label`` (its not-done images) by one process and by ``--shards`` processes
  (``--shard K/N``) at once. Each shard runs a model version of its own (a copy of the trained
  one, same weights), so the proposals table says which run labelled each image: checked that
  every image's proposals come from its shard's run alone, none missing, and that the proposals
  the runs reported equal the rows stored. Printed: images per second, one process against all.
- ``kill``: a writer making edits (and every 50th edit a batch of 100 boxes in one call, as an
  import does) is sent SIGKILL at a random moment, ``--kills`` times, on both backends. Checked
  after each: every acknowledged edit is in the edit log (at most the one in flight besides),
  every logged annotation is stored and every stored one logged, each batch stored whole or not
  at all, SQLite's ``integrity_check`` and ``foreign_key_check`` clean, and the project opens and
  takes a write.

A loaded 2-core machine makes the figures noisy: say what else ran.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_teams import databases, make_project, percentile

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.store import ModelVersion, Project, StaleAnnotationError

CONFLICT_EVERY = 25
"""Every this many edits the writers of a pair save their shared annotation at once."""
BATCH_EVERY, BATCH_SIZE = 50, 100
"""In the kill part, every ``BATCH_EVERY`` edits ``BATCH_SIZE`` boxes are added in one call."""
PROPOSALS_PER_WRITER = 110


def box(image_id: int, x: float, **extra: Any) -> Annotation:
    return Annotation(image_id=image_id, category_id=1, kind=Kind.BOX, box_xywh=(x, 2.0, 6.0, 6.0), **extra)


def acknowledge(acks: Any, action: str, annotation_id: int | None) -> None:
    """One committed edit, written (and flushed to the OS) after its commit returned."""
    acks.write(f"{action} {annotation_id}\n")
    acks.flush()


# ---- writers ----------------------------------------------------------------------------


def prepare_writers(target: str, folder: Path, writers: int) -> dict[str, Any]:
    """A project of 8 images per writer, each image with proposals of a stored model version, and
    one shared annotation per pair of writers. Returns what the writers need of it."""
    images = 8 * writers
    make_project(target, folder, images)
    with Project.open(target, image_root=folder) as project:
        version = project.add_model_version(
            ModelVersion(plugin="bench", settings={}, categories=(1,), checkpoint="none.safetensors")
        )
        per_image = -(-PROPOSALS_PER_WRITER // 8)
        for image_id in (r.id for r in project.images()):
            project.replace_proposals(
                image_id,
                plugin="bench",
                proposals=[
                    box(image_id, 1.0 + k, state=State.PROPOSED, model_version=version.id, score=0.5)
                    for k in range(per_image)
                ],
            )
        shared = [project.add_annotation(box(1, 30.0), log=False) for _ in range(writers // 2)]
        log_start = max((e["id"] for e in project.edit_log()), default=0)
    return {"shared": [a.id for a in shared], "revisions": [a.revision or 0 for a in shared], "log_start": log_start}


def writer(
    target: str,
    folder: str,
    rank: int,
    writers: int,
    edits: int,
    shared: list[int],
    start: Any,
    pair: Any,
    acks_path: str,
    out: Any,
) -> None:
    """One process's ``edits`` edits; its conflicts with its pair partner (``pair`` a barrier of
    two, or None); what it saw commit written to ``acks_path``, its tallies put on ``out``."""
    times: list[float] = []
    applied = refused = 0
    with Project.open(target, image_root=folder) as project, open(acks_path, "w") as acks:
        mine = [r.id for r in project.images()][rank::writers]
        proposals = [a for i in mine for a in project.annotations(i, states=[State.PROPOSED])]
        shared_id = shared[rank // 2] if pair is not None else None
        last: Annotation | None = None
        start.wait()
        t_start = time.time()
        for i in range(edits):
            t0 = time.perf_counter()
            if shared_id is not None and i % CONFLICT_EVERY == CONFLICT_EVERY // 2:
                pair.wait()  # both have committed what came before
                seen = project.annotation(shared_id)
                pair.wait()  # both have read the same revision
                try:
                    project.update_annotation(replace(seen, box_xywh=(float(rank), 1.0, 5.0, 5.0)))
                    applied += 1
                    acknowledge(acks, "edit", shared_id)
                except StaleAnnotationError:
                    refused += 1
            elif i % 10 in (3, 7) and proposals:
                state = State.ACCEPTED if i % 10 == 3 else State.REJECTED
                (done,) = project.set_states([proposals.pop()], state)
                acknowledge(acks, state.value, done.id)
            elif i % 2 == 0 or last is None:
                last = project.add_annotation(box(mine[i % len(mine)], 20.0 + i % 20))
                acknowledge(acks, "add", last.id)
            else:
                last = project.update_annotation(replace(last, box_xywh=(21.0, 3.0, 5.0, float(1 + i % 7))))
                acknowledge(acks, "edit", last.id)
            times.append(time.perf_counter() - t0)
        out.put({"rank": rank, "times": times, "applied": applied, "refused": refused, "span": (t_start, time.time())})


def read_acks(paths: list[Path]) -> Counter[tuple[str, int]]:
    """The acknowledged edits as ``(action, annotation id)`` counts (a line cut by a kill is none)."""
    acks: Counter[tuple[str, int]] = Counter()
    for path in paths:
        for line in path.read_text().split("\n")[:-1]:
            action, annotation_id = line.split()
            acks[(action, int(annotation_id))] += 1
    return acks


def logged_edits(project: Project, log_start: int) -> Counter[tuple[str, int]]:
    return Counter((e["action"], e["annotation_id"]) for e in project.edit_log() if e["id"] > log_start)


def run_writers(target: str, folder: Path, writers: int, edits: int) -> dict[str, Any]:
    setup = prepare_writers(target, folder, writers)
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    start = ctx.Barrier(writers)
    pairs = [ctx.Barrier(2, timeout=120) for _ in range(writers // 2)]
    acks = [folder.parent / f"acks-{folder.name}-{r}.txt" for r in range(writers)]
    procs = [
        ctx.Process(
            target=writer,
            args=(
                target,
                str(folder),
                r,
                writers,
                edits,
                setup["shared"],
                start,
                pairs[r // 2] if r // 2 < len(pairs) else None,
                str(acks[r]),
                queue,
            ),
        )
        for r in range(writers)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    crashed = [p.exitcode for p in procs if p.exitcode != 0]
    acked = read_acks(acks)
    with Project.open(target, image_root=folder) as project:
        logged = logged_edits(project, setup["log_start"])
        states = {a.id: a.state for a in project.annotations()}
        shared_revisions = [project.annotation(i).revision or 0 for i in setup["shared"]]
    wrong_state = sum(
        1 for (action, i) in acked if action in ("accepted", "rejected") and states.get(i) != State(action)
    )
    applied = sum(r["applied"] for r in results)
    refused = sum(r["refused"] for r in results)
    rounds = len(setup["shared"]) * len([i for i in range(edits) if i % CONFLICT_EVERY == CONFLICT_EVERY // 2])
    times = [t for r in results for t in r["times"]]
    wall = max(r["span"][1] for r in results) - min(r["span"][0] for r in results)
    return {
        "writers": writers,
        "edits": len(times),
        "edits_per_second": len(times) / wall,
        "edit_ms_median": 1000 * statistics.median(times),
        "edit_ms_p95": 1000 * percentile(times, 95),
        "wall_seconds": wall,
        "acknowledged": sum(acked.values()),
        "lost": sum((acked - logged).values()),
        "unacknowledged_in_log": sum((logged - acked).values()),
        "wrong_state": wrong_state,
        "accepted": sum(n for (a, _), n in acked.items() if a == "accepted"),
        "rejected": sum(n for (a, _), n in acked.items() if a == "rejected"),
        "conflict_rounds": rounds,
        "conflicts_applied": applied,
        "conflicts_refused": refused,
        # each round: one save stood (the shared annotation's revision moved once), one refused
        "conflicts_ok": applied == rounds
        and refused == rounds
        and sum(shared_revisions) - sum(setup["revisions"]) == applied,
        "crashed": crashed,
    }


def writers_ok(figures: dict[str, Any]) -> bool:
    return (
        not figures["crashed"]
        and figures["lost"] == 0
        and figures["unacknowledged_in_log"] == 0
        and figures["wrong_state"] == 0
        and figures["conflicts_ok"]
    )


def print_writers(by_backend: dict[str, dict[str, Any]]) -> None:
    for name, f in by_backend.items():
        print(
            f"{name:<11} {f['writers']} writers x {f['edits'] // f['writers']} edits: {f['edits_per_second']:.0f} edits/s "
            f"in all (one edit median {f['edit_ms_median']:.1f} ms, 95th percentile {f['edit_ms_p95']:.1f} ms; "
            f"{f['wall_seconds']:.1f} s)"
        )
        print(
            f"{'':<11} {f['acknowledged']} edits acknowledged ({f['accepted']} accepts, {f['rejected']} rejects), "
            f"lost {f['lost']}, in the log unacknowledged {f['unacknowledged_in_log']}, wrong state {f['wrong_state']}; "
            f"conflicts: {f['conflict_rounds']} rounds, {f['conflicts_applied']} saves stood + "
            f"{f['conflicts_refused']} refused = {f['conflicts_applied'] + f['conflicts_refused']} attempts "
            f"({'every conflict reported' if f['conflicts_ok'] else 'CONFLICTS MISSED'})"
            + (f"; CRASHED: exit codes {f['crashed']}" if f["crashed"] else "")
        )


# ---- shards -----------------------------------------------------------------------------


def cli(*args: str) -> list[str]:
    """The command line of ``labeler ARGS --progress json``."""
    return [sys.executable, "-m", "labeler", *args, "--progress", "json"]


def labeler(*args: str) -> list[dict[str, Any]]:
    """Run the CLI with ``--progress json``; its JSON lines."""
    run = subprocess.run(cli(*args), capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"labeler {args[0]} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def run_shards(url: str, root: Path, images: int, shards: int) -> dict[str, Any]:
    from labeler.learning.autolabel import in_shard
    from labeler.learning.synthetic import make_project as make_synthetic

    make_synthetic(root, database=url, images=images, done=min(20, images // 2)).close()
    common = ["--image-root", str(root), "--plugin", "segmenter"]
    t0 = time.perf_counter()
    labeler("train", url, *common, "--time-budget", "4", "--set", "crop=32", "--activate", "always")
    train_s = time.perf_counter() - t0
    with Project.open(url, image_root=root) as project:
        trained = project.active_model_version("segmenter")
        assert trained is not None and trained.id is not None
        copies = [project.add_model_version(replace(trained, id=None, active=False)).id for _ in range(shards)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            cli("auto-label", url, *common, "--shard", f"{k + 1}/{shards}", "--model-version", str(copies[k])),
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(shards)
    ]
    outputs = [p.communicate()[0] for p in procs]
    sharded_s = time.perf_counter() - t0
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError(f"a shard failed: exit codes {[p.returncode for p in procs]}")
    dones = [json.loads(out.splitlines()[-1]) for out in outputs]
    with Project.open(url, image_root=root) as project:
        records = project.images(done=False)
        ids = [r.id for r in records]
        # an image the model saw nothing on has no proposals, but its uncertainty is stored
        unlabelled = {r.id for r in records if r.uncertainty is None}
        runs: dict[int, set[int | None]] = {i: set() for i in ids}
        stored = 0
        for a in project.annotations(states=[State.PROPOSED]):  # none on the done images
            runs[a.image_id].add(a.model_version)
            stored += 1
    t0 = time.perf_counter()  # then one process, the same work (its proposals replace the shards')
    (one,) = [
        e for e in labeler("auto-label", url, *common, "--model-version", str(trained.id)) if e["event"] == "done"
    ]
    one_s = time.perf_counter() - t0
    expected = {i: copies[next(k for k in range(shards) if in_shard(i, (k + 1, shards)))] for i in ids}
    return {
        "images": len(ids),
        "shards": shards,
        "train_seconds": train_s,
        "one_process_seconds": one_s,
        "one_process_images_per_second": one["images"] / one_s,
        "sharded_seconds": sharded_s,
        "sharded_images_per_second": sum(d["images"] for d in dones) / sharded_s,
        "shard_images": [d["images"] for d in dones],
        "missing": sum(1 for i in ids if not runs[i] and i in unlabelled),
        "without_proposals": sum(1 for i in ids if not runs[i]),
        "labelled_by_another_run": sum(1 for i in ids if runs[i] and runs[i] != {expected[i]}),
        "proposals_reported": sum(d["proposals"] for d in dones),
        "proposals_stored": stored,
    }


def shards_ok(f: dict[str, Any]) -> bool:
    return (
        f["missing"] == 0
        and f["labelled_by_another_run"] == 0
        and sum(f["shard_images"]) == f["images"]
        and f["proposals_reported"] == f["proposals_stored"]
    )


def print_shards(f: dict[str, Any]) -> None:
    print(
        f"auto-label of {f['images']} images (segmenter trained {f['train_seconds']:.0f} s): one process "
        f"{f['one_process_images_per_second']:.1f} images/s ({f['one_process_seconds']:.1f} s); "
        f"{f['shards']} shards at once {f['sharded_images_per_second']:.1f} images/s ({f['sharded_seconds']:.1f} s, "
        f"process start and model load included; shards of {f['shard_images']} images)"
    )
    print(
        f"  images missing {f['missing']} (with no proposal but labelled {f['without_proposals'] - f['missing']}), labelled by another shard's run {f['labelled_by_another_run']}; proposals "
        f"reported {f['proposals_reported']}, stored {f['proposals_stored']} "
        f"({'each image labelled exactly once' if shards_ok(f) else 'NOT EXACTLY ONCE'})"
    )


# ---- kill -9 ----------------------------------------------------------------------------


def killed_writer(target: str, folder: str, acks_path: str) -> None:
    """Edits until killed: adds, edits and every ``BATCH_EVERY``-th edit a batch (one call)."""
    with Project.open(target, image_root=folder) as project, open(acks_path, "a") as acks:
        ids = [r.id for r in project.images()]
        last: Annotation | None = None
        for i in range(10**9):
            image_id = ids[i % len(ids)]
            if i % BATCH_EVERY == BATCH_EVERY // 2:
                batch = project.add_annotations(
                    box(image_id, float(k % 40), attributes={"batch": f"{os.getpid()}-{i}"}) for k in range(BATCH_SIZE)
                )
                for a in batch:
                    acknowledge(acks, "add", a.id)
            elif i % 2 == 0 or last is None:
                last = project.add_annotation(box(image_id, 20.0))
                acknowledge(acks, "add", last.id)
            else:
                last = project.update_annotation(replace(last, box_xywh=(21.0, 3.0, 5.0, float(1 + i % 7))))
                acknowledge(acks, "edit", last.id)


def consistency(target: str, folder: Path, acks: Path) -> dict[str, Any]:
    """What a kill may have broken, counted (all zero when nothing was); then one more write, to
    see the project still takes one (acknowledged like the writer's)."""
    text = acks.read_text()
    acks.write_text(text[: text.rfind("\n") + 1])  # a line the kill cut is no acknowledgement
    acked = read_acks([acks])
    with Project.open(target, image_root=folder) as project:
        logged = logged_edits(project, 0)
        anns = project.annotations()
        stored = {a.id for a in anns}
        added = {i for (action, i) in logged if action == "add"}
        batches = Counter(str(a.attributes["batch"]) for a in anns if "batch" in a.attributes)
        sqlite = {}
        if project.backend == "sqlite":
            conn = project._conn
            sqlite = {
                "integrity_check": conn.execute("PRAGMA integrity_check").fetchone()[0],
                "foreign_key_problems": len(conn.execute("PRAGMA foreign_key_check").fetchall()),
            }
        with open(acks, "a") as out:
            acknowledge(out, "add", project.add_annotation(box(1, 5.0)).id)
    return {
        "acknowledged": sum(acked.values()),
        "lost": sum((acked - logged).values()),
        "unacknowledged_in_log": sum((logged - acked).values()),
        "logged_not_stored": len(added - stored),
        "stored_not_logged": len(stored - added),
        "partial_batches": sum(1 for n in batches.values() if n != BATCH_SIZE),
        **sqlite,
    }


def run_kills(target: str, folder: Path, kills: int, rng: random.Random) -> list[dict[str, Any]]:
    make_project(target, folder, 16)
    acks = folder.parent / f"acks-{folder.name}.txt"
    acks.touch()
    rounds = []
    ctx = mp.get_context("spawn")
    for _ in range(kills):
        proc = ctx.Process(target=killed_writer, args=(target, str(folder), str(acks)))
        before = acks.stat().st_size
        proc.start()
        while acks.stat().st_size == before:  # working: its first edit is acknowledged
            time.sleep(0.01)
        after = rng.uniform(0.2, 2.0)
        time.sleep(after)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        found = consistency(target, folder, acks)
        # committed but not acknowledged by this kill: the edit (or batch) in flight at most
        found["cut_by_this_kill"] = found["unacknowledged_in_log"] - sum(r["cut_by_this_kill"] for r in rounds)
        rounds.append({"killed_after_seconds": after, **found})
    return rounds


def kill_ok(r: dict[str, Any]) -> bool:
    return (
        r["lost"] == 0
        and 0 <= r["cut_by_this_kill"] <= BATCH_SIZE
        and r["logged_not_stored"] == 0
        and r["stored_not_logged"] == 0
        and r["partial_batches"] == 0
        and r.get("integrity_check", "ok") == "ok"
        and r.get("foreign_key_problems", 0) == 0
    )


def print_kills(by_backend: dict[str, list[dict[str, Any]]]) -> None:
    for name, rounds in by_backend.items():
        for r in rounds:
            print(
                f"{name:<11} killed after {r['killed_after_seconds']:.2f} s: {r['acknowledged']} edits acknowledged in all, "
                f"lost {r['lost']}, committed but unacknowledged {r['cut_by_this_kill']}, "
                f"partial batches {r['partial_batches']}, log and table "
                f"{'agree' if r['logged_not_stored'] == r['stored_not_logged'] == 0 else 'DISAGREE'}"
                + (f", integrity_check {r['integrity_check']}" if "integrity_check" in r else "")
                + f" ({'consistent' if kill_ok(r) else 'BROKEN'})"
            )


# ---- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", nargs="?", default="all", choices=["writers", "shards", "kill", "all"])
    ap.add_argument("--server", help="a PostgreSQL URL whose user may create databases (default: a throwaway server)")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--edits", type=int, default=500, help="edits per writer")
    ap.add_argument("--images", type=int, default=200, help="images of the auto-label part")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--kills", type=int, default=3, help="kills per backend")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    parts = ["writers", "shards", "kill"] if args.part == "all" else [args.part]

    figures: dict[str, Any] = {}
    ok = True
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    with databases(args.server) as new_database, tempfile.TemporaryDirectory(prefix="labeler-team-load-") as tmp:
        stamp = f"{os.getpid()}_{int(time.time())}"
        if "writers" in parts:
            sqlite = Path(tmp) / "writers-sqlite"
            figures["writers"] = {
                "postgresql": run_writers(
                    new_database(f"writers_{stamp}"), Path(tmp) / "writers-pg", args.writers, args.edits
                ),
                "sqlite": run_writers(str(sqlite), sqlite, args.writers, args.edits),
            }
            print_writers(figures["writers"])
            ok &= all(writers_ok(f) for f in figures["writers"].values())
        if "shards" in parts:
            figures["shards"] = run_shards(
                new_database(f"shards_{stamp}"), Path(tmp) / "shards", args.images, args.shards
            )
            print_shards(figures["shards"])
            ok &= shards_ok(figures["shards"])
        if "kill" in parts:
            rng = random.Random(args.seed)
            sqlite = Path(tmp) / "kill-sqlite"
            figures["kill"] = {
                "postgresql": run_kills(new_database(f"kill_{stamp}"), Path(tmp) / "kill-pg", args.kills, rng),
                "sqlite": run_kills(str(sqlite), sqlite, args.kills, rng),
            }
            print_kills(figures["kill"])
            ok &= all(kill_ok(r) for rounds in figures["kill"].values() for r in rounds)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
