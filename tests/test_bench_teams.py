"""The team benchmark runs end to end on a real PostgreSQL server (a short run: its figures are
printed by the benchmark, not asserted here beyond being real measurements)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_teams.py"


def bench(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_bench_teams_measures_a_team_on_one_database(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "teams.json"
    options = ["--annotators", "2", "--images", "12", "--seconds", "2", "--json", str(out)]
    run = bench(BENCH, "--url", pg_url, *options)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    assert figures["stale_save_refused"] is True
    assert figures["images_done"] > 0 and figures["edits"] == 6 * figures["images_done"]
    assert figures["probes"] > 0 and figures["notify_ms_median"] > 0
    assert "a colleague hears an edit" in run.stdout


LOAD = BENCH.with_name("bench_team_load.py")
SCALE = BENCH.with_name("bench_scale.py")


@pytest.mark.slow
def test_bench_team_load_checks_writers_shards_and_kills(pg_server, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    options = ["--writers", "2", "--edits", "30", "--images", "12", "--shards", "2", "--kills", "1", "--json", str(out)]
    run = bench(LOAD, "all", "--server", pg_server.url("postgres"), *options)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    for writers in figures["writers"].values():
        assert writers["edits"] == 60 and writers["lost"] == 0 and writers["conflicts_refused"] == 1
    assert figures["shards"]["missing"] == 0 and sum(figures["shards"]["shard_images"]) == 6
    assert [len(rounds) for rounds in figures["kill"].values()] == [1, 1]
    assert "every conflict reported" in run.stdout and "each image labelled exactly once" in run.stdout


@pytest.mark.slow
def test_bench_scale_inits_and_paints_on_both_backends(pg_server) -> None:
    run = bench(SCALE, "--images", "300", "--repeats", "1", "--postgresql", pg_server.url("postgres"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SQLite    PostgreSQL" in run.stdout and "window first paint" in run.stdout
