"""Two processes writing to one project at once: no lost write, no "database is locked"."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from labeler.core.annotation import Annotation, Kind
from labeler.core.store import Project

PER_WRITER = 200


def _writer(where: tuple[str, str | None], category: int, start: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    """Adds PER_WRITER boxes, each in its own transaction, plus some other writes between."""
    try:
        with Project.open(where[0], image_root=where[1]) as p:
            image_ids = [r.id for r in p.images()]
            start.wait(60)  # both processes are ready: they write at the same time
            for i in range(PER_WRITER):
                image_id = image_ids[i % len(image_ids)]
                p.add_annotation(
                    Annotation(image_id=image_id, category_id=category, kind=Kind.BOX, box_xywh=(i, category, 1, 1))
                )
                if i % 20 == 0:
                    p.replace_proposals(image_id, plugin="test", proposals=[], uncertainty=i / PER_WRITER)
                    with p.transaction():  # a grouped write, too
                        p.log_edit("draw", image_id=image_id, seconds=float(i))
                        p.set_done(image_id, True)
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test with it
        errors.put(traceback.format_exc())


def test_two_processes_write_at_once_without_losing_anything(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    (tmp_path / "p" / "images").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.zeros((256, 256, 3), dtype=np.uint8)).save(tmp_path / "p" / "images" / f"{i}.png")
    p = make_project(tmp_path / "p")
    p.add_folder(tmp_path / "p" / "images")
    p.add_category("a")
    p.add_category("b")
    where = (str(tmp_path / "p"), None) if p.url is None else (p.url, str(p.root))
    ctx = mp.get_context("spawn")
    start, errors = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(where, c, start, errors)) for c in (1, 2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert not problems, "\n".join(problems)
    assert [proc.exitcode for proc in procs] == [0, 0]
    with p.open_again() as p:
        anns = p.annotations()
        for category in (1, 2):
            xs = sorted(int(a.box_xywh[0]) for a in anns if a.category_id == category)
            assert xs == list(range(PER_WRITER))
        assert len(p.edit_log(action="draw")) == 2 * (PER_WRITER // 20)
        assert len(p.edit_log(action="add")) == 2 * PER_WRITER


def test_threads_share_one_project(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    Image.fromarray(np.zeros((8, 256, 3), dtype=np.uint8)).save(tmp_path / "p" / "x.png")
    failures: list[BaseException] = []
    with Project.create(tmp_path / "p", exist_ok=True) as p:
        (image_id,) = p.add_images([tmp_path / "p" / "x.png"])
        p.add_category("a")

        def work(offset: int) -> None:
            try:
                for i in range(50):
                    with p.transaction():
                        p.add_annotation(
                            Annotation(image_id=image_id, category_id=1, kind=Kind.BOX, box_xywh=(offset + i, 0, 1, 1))
                        )
                    p.annotations(image_id)
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised by the test
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
        assert len(p.annotations(image_id)) == 150


def _hold_write_lock(root: str, ready: mp.synchronize.Event, seconds: float) -> None:
    with Project.open(root) as p, p.transaction():
        p.add_category("held")
        ready.set()
        time.sleep(seconds)


def test_a_writer_waits_for_a_long_transaction_instead_of_failing(tmp_path: Path) -> None:
    """While another process holds the write lock, reads go on at once and writes wait, then succeed."""
    Project.create(tmp_path / "p").close()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_write_lock, args=(str(tmp_path / "p"), ready, 1.5))
    holder.start()
    try:
        assert ready.wait(60)
        with Project.open(tmp_path / "p") as p:
            start = time.monotonic()
            assert p.categories() == []  # WAL: readers see the last commit without waiting
            assert time.monotonic() - start < 1.0
            p.add_category("mine")  # waits for the holder's commit, then goes through
            waited = time.monotonic() - start
            assert [c.name for c in p.categories()] == ["held", "mine"]
        assert waited > 0.5
    finally:
        holder.join(60)
    assert holder.exitcode == 0
