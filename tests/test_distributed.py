"""``torchrun --nproc-per-node 2 -m labeler train``: DDP on gloo, one model version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from learning_support import install_minimal_plugin

from labeler.core.store import Project
from labeler.learning.synthetic import make_project

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torchrun with gloo is tested on Linux")
def test_two_processes_train_one_version(tmp_path):
    target = install_minimal_plugin()
    make_project(tmp_path / "proj", images=10, done=10).close()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["LABELER_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    command = [
        str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun") or "torchrun",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "labeler",
        "train",
        str(tmp_path / "proj"),
        "--plugin",
        "minimal",
        "--time-budget",
        "3",
        "--progress",
        "json",
        "--device",
        "cpu",
    ]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("start") == 1  # rank 0 alone reports
    start, done = events[0], events[-1]
    assert start["world_size"] == 2 and done["event"] == "done"
    with Project.open(tmp_path / "proj") as project:
        versions = project.model_versions()
        assert [v.id for v in versions] == [done["version"]]
        data = versions[0].data
        assert data["world_size"] == 2 and data["stopped_by"] == "time"
        assert data["steps"] > 0
        # both ranks went on to the refit on all 10 images; rank 0 wrote its selection checkpoint
        assert data["refit"]["images"] == 10 and data["refit"]["steps"] > 0
        assert (tmp_path / "proj" / data["selection_checkpoint"]).is_file()
    assert [e["event"] for e in events].count("refit") == 1


def _rank_worker(rank: int, init_file: str, fail_rank: int, out_file: str) -> None:
    """One rank of a 2-process gloo group running fit(); ``fail_rank`` gets NaN losses at step 3."""
    import torch.distributed as dist
    from learning_support import minimal_plugin

    from labeler.learning.api import PluginError, default_settings
    from labeler.learning.loop import fit
    from labeler.learning.synthetic import make_samples

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    plugin = minimal_plugin()
    settings = default_settings(plugin)
    inner = plugin.losses
    steps = {"n": 0}

    def losses(model, batch, *, settings):
        out = inner(model, batch, settings=settings)
        steps["n"] += 1
        if rank == fail_rank and steps["n"] > 3:
            return {"ce": out["ce"] * float("nan")}
        return out

    plugin.losses = losses
    items = [plugin.prepare(s, settings=settings) for s in make_samples(6)]
    model = plugin.build_model(num_classes=2, settings=settings)
    try:
        result = fit(plugin, model, items, settings=settings, time_budget=1.0 + rank, prefetch=0)
        outcome = f"ok {result.steps} {result.stopped_by}"
    except PluginError as exc:
        outcome = f"error {exc.reason}"
    Path(out_file).write_text(outcome)
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("fail_rank", [-1, 1], ids=["budget", "nan-on-rank-1"])
def test_ranks_stop_together(tmp_path, fail_rank):
    """Different time budgets per rank, or a NaN on one rank: both ranks end, none waits forever."""
    import multiprocessing

    install_minimal_plugin()
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"rank{r}.txt" for r in range(2)]
    procs = [
        ctx.Process(target=_rank_worker, args=(r, str(tmp_path / "init"), fail_rank, str(outs[r]))) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank was left waiting"
    results = [o.read_text() for o in outs]
    if fail_rank < 0:
        steps = {r.split()[1] for r in results}
        assert len(steps) == 1 and all(r.startswith("ok") and r.endswith("time") for r in results)
    else:
        assert results[1] == "error NaN/inf loss 'ce' at step 3"
        assert results[0] == "error failed on another rank (see its log)"
