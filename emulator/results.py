"""The results store: every run, calibration and validation, with its points, in one SQLite file.

Default path `$XDG_DATA_HOME/emulator/results.sqlite` (else `~/.local/share/emulator/results.sqlite`),
overridden by the `EMULATOR_RESULTS` environment variable or the `path` argument. WAL mode and a busy timeout
let several processes write at once; each run with all its points is one transaction, so a process killed
mid-write leaves either the whole run or nothing.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from emulator.errors import EmulatorError

RUN_KINDS = ("run", "calibration", "validate")
POINT_COLUMNS = (
    "family",
    "name",
    "params_json",
    "dtype",
    "matrix_flops",
    "vector_flops",
    "bytes_read",
    "bytes_written",
    "median_s",
    "p20_s",
    "p80_s",
    "num_reps",
)

# Each entry moves the schema from version i to i+1. Append only; never edit a shipped migration.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('run', 'calibration', 'validate')),
        created_at TEXT NOT NULL,
        device_key TEXT,
        fingerprint_json TEXT NOT NULL,
        scenario_json TEXT NOT NULL,
        summary_json TEXT NOT NULL
    );
    CREATE TABLE points (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        family TEXT NOT NULL,
        name TEXT NOT NULL,
        params_json TEXT NOT NULL,
        dtype TEXT,
        matrix_flops REAL,
        vector_flops REAL,
        bytes_read REAL,
        bytes_written REAL,
        median_s REAL,
        p20_s REAL,
        p80_s REAL,
        num_reps INTEGER
    );
    CREATE INDEX points_run ON points(run_id);
    CREATE INDEX runs_device ON runs(device_key, kind);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """Where the store lives unless told otherwise (see the module docstring)."""
    env = os.environ.get("EMULATOR_RESULTS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "emulator" / "results.sqlite"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class ResultsStore:
    """A handle on the SQLite results file; opening it creates or migrates the schema."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_ms = int(busy_timeout_s * 1000)
        with self._connect() as conn:
            self._migrate(conn)

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what we say.
            conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise EmulatorError(
                f"cannot open the results store ({exc}); move the file aside or set EMULATOR_RESULTS to another path",
                file=str(self.path),
            ) from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; others wait on the busy timeout
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
            if version > SCHEMA_VERSION:
                raise EmulatorError(
                    f"the results store has schema version {version}, newer than this emulator knows "
                    f"({SCHEMA_VERSION}); upgrade the emulator or set EMULATOR_RESULTS to another file",
                    file=str(self.path),
                    field="schema_version",
                )
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    def record_run(
        self,
        kind: str,
        fingerprint: Mapping[str, Any],
        scenario: Any,
        summary: Any,
        points: Iterable[Mapping[str, Any] | Any] = (),
    ) -> int:
        """Store one run and all its points in a single transaction; returns the run id.

        A point is a mapping (or an object with the same attributes) with the `POINT_COLUMNS` fields, `params`
        as a dict (or `params_json` as text); missing numbers are stored as NULL.
        """
        if kind not in RUN_KINDS:
            raise EmulatorError(f"run kind '{kind}' is not one of {', '.join(RUN_KINDS)}", field="kind")
        rows = [self._point_row(p) for p in points]
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO runs (kind, created_at, device_key, fingerprint_json, scenario_json, summary_json)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (kind, created, fingerprint.get("key"), _dumps(dict(fingerprint)), _dumps(scenario),
                     _dumps(summary)),
                )
                run_id = int(cur.lastrowid or 0)
                conn.executemany(
                    f"INSERT INTO points (run_id, {', '.join(POINT_COLUMNS)}) VALUES (?{', ?' * len(POINT_COLUMNS)})",
                    [(run_id, *r) for r in rows],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
        return run_id

    @staticmethod
    def _point_row(p: Mapping[str, Any] | Any) -> tuple:
        get = p.get if isinstance(p, Mapping) else (lambda k, d=None: getattr(p, k, d))
        params_json = get("params_json") or _dumps(get("params", {}))
        values = {c: get(c) for c in POINT_COLUMNS}
        values["params_json"] = params_json
        if not values["family"] or not values["name"]:
            raise EmulatorError("every point needs a 'family' and a 'name'", field="points")
        return tuple(values[c] for c in POINT_COLUMNS)

    def list_runs(self, limit: int = 20, *, kind: str | None = None) -> list[dict[str, Any]]:
        """The newest runs first (without points), each with its point count."""
        sql = "SELECT r.*, (SELECT COUNT(*) FROM points p WHERE p.run_id = r.id) AS num_points FROM runs r"
        args: tuple = ()
        if kind is not None:
            sql += " WHERE r.kind = ?"
            args = (kind,)
        sql += " ORDER BY r.id DESC LIMIT ?"
        with self._connect() as conn:
            return [self._run_dict(row) for row in conn.execute(sql, (*args, limit))]

    def get_run(self, run_id: int) -> dict[str, Any]:
        """One run with its points; EmulatorError when there is no such run."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise EmulatorError(
                    f"no run with id {run_id}; `emulator results list` shows the ids", file=str(self.path)
                )
            run = self._run_dict(row)
            pts = conn.execute("SELECT * FROM points WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        run["points"] = [self._point_dict(p) for p in pts]
        return run

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for name in ("fingerprint", "scenario", "summary"):
            d[name] = json.loads(d.pop(f"{name}_json"))
        return d

    @staticmethod
    def _point_dict(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d.pop("id", None)
        d["params"] = json.loads(d.pop("params_json"))
        return d

    def export(self, fmt: str, out: str | os.PathLike[str] | IO[str]) -> None:
        """Write every run with its points: 'json' (runs with their points) or 'csv' (one row per point, joined with
        its run; a run without points, such as `emulator run`'s, is one row with empty point columns). Every CSV
        row ends with its run's scenario and summary as JSON text."""
        if fmt not in ("csv", "json"):
            raise EmulatorError(f"export format '{fmt}' is not 'csv' or 'json'", field="format")
        if isinstance(out, (str, os.PathLike)):
            with open(out, "w", encoding="utf-8", newline="") as f:
                self.export(fmt, f)
            return
        with self._connect() as conn:
            if fmt == "json":
                ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id")]
                json.dump([self.get_run(i) for i in ids], out, indent=1)
                out.write("\n")
                return
            cursor = conn.execute(
                "SELECT r.id AS run_id, r.kind, r.created_at, r.device_key, "
                + ", ".join(f"p.{c}" for c in POINT_COLUMNS)
                + ", r.scenario_json, r.summary_json FROM runs r LEFT JOIN points p ON p.run_id = r.id"
                " ORDER BY r.id, p.id"
            )
            writer = csv.writer(out)
            writer.writerow([d[0] for d in cursor.description])
            writer.writerows(tuple(row) for row in cursor)
