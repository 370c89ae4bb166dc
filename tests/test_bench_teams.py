"""The team benchmark runs end to end on a real PostgreSQL server (a short run: its figures are
printed by the benchmark, not asserted here beyond being real measurements)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_teams.py"


def test_bench_teams_measures_a_team_on_one_database(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "teams.json"
    options = ["--annotators", "2", "--images", "12", "--seconds", "2", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, str(BENCH), "--url", pg_url, *options],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    assert figures["stale_save_refused"] is True
    assert figures["images_done"] > 0 and figures["edits"] == 6 * figures["images_done"]
    assert figures["probes"] > 0 and figures["notify_ms_median"] > 0
    assert "a colleague hears an edit" in run.stdout
