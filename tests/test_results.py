"""Specs for emulator.results: one transaction per run, safe concurrent writers, clear schema errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.results import SCHEMA_VERSION, ResultsStore, default_path

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = {"key": "cpu-test-2t", "name": "test cpu", "kind": "cpu"}


def _point(i: int) -> dict:
    return {"family": "gemm", "name": "gemm", "params": {"m": i, "n": 8, "k": 8}, "dtype": "fp32",
            "matrix_flops": 2.0 * i * 64, "vector_flops": 0.0, "bytes_read": 4.0 * (8 * i + 64),
            "bytes_written": 32.0 * i, "median_s": 1e-6 * i, "p20_s": 0.9e-6 * i, "p80_s": 1.1e-6 * i, "num_reps": 5}


def _run_python(code: str, db: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMULATOR_RESULTS": str(db)}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def test_record_and_read_back(tmp_path: Path) -> None:
    """A recorded run comes back with its fingerprint, scenario, summary and points."""
    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = store.record_run("calibration", FINGERPRINT, {"quick": True}, {"num_points": 3},
                              points=[_point(i) for i in (1, 2, 3)])
    run = store.get_run(run_id)
    assert run["kind"] == "calibration" and run["device_key"] == "cpu-test-2t"
    assert run["scenario"] == {"quick": True} and run["summary"] == {"num_points": 3}
    assert [p["params"]["m"] for p in run["points"]] == [1, 2, 3]
    assert run["points"][1]["median_s"] == pytest.approx(2e-6)
    listed = store.list_runs(10)
    assert listed[0]["id"] == run_id and listed[0]["num_points"] == 3
    assert store.schema_version == SCHEMA_VERSION


def test_newest_runs_first_and_limit(tmp_path: Path) -> None:
    """list_runs returns the newest runs first, at most `limit` of them."""
    store = ResultsStore(tmp_path / "r.sqlite")
    ids = [store.record_run("run", FINGERPRINT, {"i": i}, {}) for i in range(5)]
    assert [r["id"] for r in store.list_runs(3)] == ids[::-1][:3]


def test_unknown_run_and_bad_kind_are_clear_errors(tmp_path: Path) -> None:
    """Asking for a missing run or recording an unknown kind raises EmulatorError."""
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(EmulatorError, match="no run with id 42"):
        store.get_run(42)
    with pytest.raises(EmulatorError, match="kind"):
        store.record_run("benchmark", FINGERPRINT, {}, {})


def test_export_csv_and_json(tmp_path: Path) -> None:
    """Export writes one CSV row per point, and JSON runs with their points."""
    store = ResultsStore(tmp_path / "r.sqlite")
    store.record_run("run", FINGERPRINT, {}, {}, points=[_point(1), _point(2)])
    store.export("csv", tmp_path / "out.csv")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert len(rows) == 2 and rows[0]["family"] == "gemm" and json.loads(rows[1]["params_json"])["m"] == 2
    store.export("json", tmp_path / "out.json")
    runs = json.load(open(tmp_path / "out.json"))
    assert len(runs) == 1 and len(runs[0]["points"]) == 2
    with pytest.raises(EmulatorError, match="format"):
        store.export("xml", tmp_path / "out.xml")


def test_export_includes_runs_without_points(tmp_path: Path) -> None:
    """A run recorded without points (`emulator run`) is one CSV row with its summary, and a JSON entry."""
    store = ResultsStore(tmp_path / "r.sqlite")
    store.record_run("calibration", FINGERPRINT, {"quick": True}, {"families": {}}, points=[_point(1)])
    run_id = store.record_run("run", FINGERPRINT, {"path": "s.yaml"}, {"measured": {"step_time_s": 0.5}, "error": 0.1})
    store.export("csv", tmp_path / "out.csv")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert [r["kind"] for r in rows] == ["calibration", "run"]
    assert rows[1]["run_id"] == str(run_id) and rows[1]["family"] == "" and rows[1]["median_s"] == ""
    assert json.loads(rows[1]["summary_json"])["measured"]["step_time_s"] == 0.5
    assert json.loads(rows[1]["scenario_json"]) == {"path": "s.yaml"}
    store.export("json", tmp_path / "out.json")
    runs = json.load(open(tmp_path / "out.json"))
    assert [r["kind"] for r in runs] == ["calibration", "run"] and runs[1]["summary"]["error"] == 0.1


def test_default_path_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EMULATOR_RESULTS wins; else XDG_DATA_HOME/emulator/results.sqlite."""
    monkeypatch.delenv("EMULATOR_RESULTS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "xdg" / "emulator" / "results.sqlite"
    monkeypatch.setenv("EMULATOR_RESULTS", str(tmp_path / "x.sqlite"))
    assert default_path() == tmp_path / "x.sqlite"
    assert ResultsStore().path == tmp_path / "x.sqlite"


def test_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    """A store written by a newer emulator (unknown schema version) is refused with advice."""
    db = tmp_path / "r.sqlite"
    ResultsStore(db)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(EmulatorError, match="newer than this emulator"):
        ResultsStore(db)


def test_process_exiting_inside_the_transaction_leaves_no_half_run(tmp_path: Path) -> None:
    """A process that dies (os._exit) mid-insert leaves the store consistent, and a rerun completes."""
    db = tmp_path / "r.sqlite"
    ResultsStore(db).record_run("run", FINGERPRINT, {"first": True}, {}, points=[_point(1)])
    # The store materialises rows before BEGIN, so the dying happens inside executemany: after the run row
    # and 500 point rows are written inside the open transaction, the process exits without COMMIT.
    code = (
        "import os, sqlite3\n"
        "from emulator.results import ResultsStore\n"
        "class Dying(sqlite3.Connection):\n"
        "    def executemany(self, sql, rows):\n"
        "        for n, row in enumerate(rows, 1):\n"
        "            self.execute(sql, row)\n"
        "            if n == 500:\n"
        "                os._exit(3)\n"
        "store = ResultsStore()\n"
        "def connect():\n"
        "    c = sqlite3.connect(store.path, isolation_level=None, factory=Dying)\n"
        "    c.row_factory = sqlite3.Row\n"
        "    return c\n"
        "store._connect = connect\n"
        "pts = [{'family': 'copy', 'name': 'copy', 'params': {'i': i}, 'median_s': 1.0} for i in range(1000)]\n"
        "store.record_run('run', {'key': 'k'}, {}, {}, points=pts)\n"
    )
    proc = _run_python(code, db)
    assert proc.wait(timeout=60) == 3
    store = ResultsStore(db)
    runs = store.list_runs(10)
    assert len(runs) == 1 and runs[0]["scenario"] == {"first": True}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM points").fetchone()[0] == 1
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    run_id = store.record_run("run", FINGERPRINT, {"rerun": True}, {}, points=[_point(i) for i in range(1, 11)])
    assert len(store.get_run(run_id)["points"]) == 10


def test_sigkill_while_inserting_leaves_whole_runs_only(tmp_path: Path) -> None:
    """SIGKILL during a stream of large runs leaves only complete runs (each with all its points)."""
    db = tmp_path / "r.sqlite"
    ResultsStore(db)
    code = (
        "from emulator.results import ResultsStore\n"
        "store = ResultsStore()\n"
        "pts = [{'family': 'copy', 'name': 'copy', 'params': {'i': i}, 'median_s': 1.0} for i in range(20000)]\n"
        "while True:\n"
        "    store.record_run('calibration', {'key': 'k'}, {}, {}, points=pts)\n"
    )
    proc = _run_python(code, db)
    # Let it commit at least one run and be mid-way through another; a quiet machine commits the first in about
    # a second, and the deadline only bounds a broken writer (the loop ends at the first committed run).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            if ResultsStore(db).list_runs(1):
                break
        except EmulatorError:
            continue
    time.sleep(0.15)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = ResultsStore(db)
    runs = store.list_runs(1000)
    assert runs, "the writer committed no run within 120 s"
    assert all(r["num_points"] == 20000 for r in runs)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.record_run("run", FINGERPRINT, {}, {}, points=[_point(1)])


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    """Two processes recording runs at the same time both succeed; every run is whole."""
    db = tmp_path / "r.sqlite"
    ResultsStore(db)
    code = (
        "from emulator.results import ResultsStore\n"
        "store = ResultsStore()\n"
        "pts = [{'family': 'copy', 'name': 'copy', 'params': {'i': i}, 'median_s': 1.0} for i in range(500)]\n"
        "for j in range(20):\n"
        "    store.record_run('run', {'key': 'k'}, {'j': j}, {}, points=pts)\n"
    )
    procs = [_run_python(code, db) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    runs = ResultsStore(db).list_runs(1000)
    assert len(runs) == 40 and all(r["num_points"] == 500 for r in runs)
