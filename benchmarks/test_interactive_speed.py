"""Interactive speed (issue 13), each figure beside the tool it is measured against.

Anchors: NVIDIA AIConfigurator answers a serving estimate in about 0.05 s warm; Calculon evaluates about 140
training plans/s. Bounds on a 2-core CPU: a shipped serving example's `emulator predict` under 3 s as a process
(its traces on disk from an earlier run) and under 0.3 s warm in one process; the serving sizing examples under
10 s; the training search at 10,000 plans/s or more; the largest sizing's peak RSS under 2 GiB. A first run on a
machine traces from scratch (importing torch's compiler stack on the way): those figures are printed too. Bounds
are asserted with `EMULATOR_ACCURACY=1`, else 3x looser (conftest's `within`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.predict import predict_scenario
from emulator.scenario import load_scenario
from emulator.sizing import load_sizing, size

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SERVED = sorted(p.name for p in EXAMPLES.glob("*.yaml") if "inference:" in p.read_text())
SIZINGS = sorted(p.name for p in EXAMPLES.glob("sizing-*.yaml"))
AIC_WARM_S = 0.05  # AIConfigurator, one serving estimate, warm
CALCULON_PLANS_PER_S = 140.0
GIB = 2**30
# Run the command line in a child and report its peak resident memory on stderr (ru_maxrss: KiB on Linux).
CHILD = """import resource, runpy, sys
sys.argv = ["emulator", *sys.argv[1:]]
try:
    runpy.run_module("emulator", run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
sys.stderr.write(f"\\nmaxrss_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
sys.exit(code)
"""


def _process(argv: list[str], cache: Path, tmp: Path) -> tuple[float, float]:
    """(seconds, peak RSS bytes) of `python -m emulator ARGV` as a whole process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "EMULATOR_CACHE": str(cache), "EMULATOR_RESULTS": str(tmp / "results.sqlite"),
           "EMULATOR_CALIBRATIONS": str(tmp / "cal")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    rss = int(proc.stderr.rsplit("maxrss_kib", 1)[1].split()[0]) * 1024
    return seconds, float(rss)


@pytest.mark.parametrize("name", SERVED)
def test_serving_predict_warm(benchmark, within, versus, name: str) -> None:  # type: ignore[no-untyped-def]
    """A shipped serving example predicted again in the same process (step tables and traces cached)."""
    scenario = load_scenario(EXAMPLES / name)
    predict_scenario(scenario)
    benchmark.pedantic(lambda: predict_scenario(load_scenario(EXAMPLES / name)), rounds=5, iterations=1)
    seconds = benchmark.stats.stats.median
    versus(f"{name} predicted warm (median of 5)", seconds, "s", AIC_WARM_S, "AIConfigurator")
    within(f"{name} predicted warm", seconds, 0.3)


@pytest.mark.parametrize("name", SERVED)
def test_serving_predict_process(within, versus, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`emulator predict` of a shipped serving example as a whole process: first with an empty disk cache (it
    traces), then with the traces the first run left (the fastest of 3)."""
    argv = ["predict", str(EXAMPLES / name), "--json"]
    cold, _ = _process(argv, tmp_path / "cache", tmp_path)
    warm = min(_process(argv, tmp_path / "cache", tmp_path)[0] for _ in range(3))
    versus(f"{name} `emulator predict` process, first run on this machine", cold, "s", AIC_WARM_S, "AIConfigurator")
    versus(f"{name} `emulator predict` process, traces on disk", warm, "s", AIC_WARM_S, "AIConfigurator")
    within(f"{name} `emulator predict` process, traces on disk", warm, 3.0)


@pytest.mark.parametrize("name", SIZINGS)
def test_sizing_file(within, versus, capsys, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`emulator size` of a shipped sizing file as a process, first run and then with its traces on disk: serving
    sizings under 10 s, the training sizing's plans per second; peak RSS under 2 GiB either way."""
    argv = ["size", str(EXAMPLES / name), "--json", "--quiet", "--out", str(tmp_path / "report")]
    cold, rss_cold = _process(argv, tmp_path / "cache", tmp_path)
    warm, rss = _process(argv, tmp_path / "cache", tmp_path)
    peak = max(rss_cold, rss)
    with capsys.disabled():
        print(f"\n{name}: {cold:.2f} s first run, {warm:.2f} s with traces on disk, peak RSS {peak / GIB:.2f} GiB "
              "(bound 2 GiB)")
    if name.startswith("sizing-serve"):
        within(f"{name} as a process, traces on disk", warm, 10.0)
    else:
        plans = json.loads((tmp_path / "report" / "report.json").read_text())["search"]["evaluated"]
        versus(f"{name} as a process, first run ({plans} plans, tracing included)", plans / cold, "plans/s",
               CALCULON_PLANS_PER_S, "Calculon")
        versus(f"{name} as a process, traces on disk", plans / warm, "plans/s", CALCULON_PLANS_PER_S, "Calculon")
    assert peak < 2 * GIB, f"{name}: peak RSS {peak / GIB:.2f} GiB"


def test_training_plans_per_second(within, versus) -> None:  # type: ignore[no-untyped-def]
    """The llama3-70b training search in process with its traces traced: at least 10,000 plans/s."""
    sz = load_sizing(EXAMPLES / "sizing-llama3-70b-train.yaml")
    size(sz)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        res = size(sz)
        best = min(best, time.perf_counter() - start)
    versus(f"llama3-70b training search, {res.num_evaluated} plans (fastest of 3)", res.num_evaluated / best,
           "plans/s", CALCULON_PLANS_PER_S, "Calculon")
    within(f"{res.num_evaluated} plans at 10,000 plans/s", best, res.num_evaluated / 10_000)
