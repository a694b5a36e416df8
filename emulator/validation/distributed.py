"""Run a plan's per-rank program for real under torchrun, and measure its collectives (gloo on CPU, NCCL on GPU).

Each rank builds the same program the tracer sees for it (`cluster.shard.shard_config`: its tensor-parallel
shard of its stage, its experts, its sequence chunk) with `build_step` on the real device, times one training
step of it, then issues every collective of the plan (`cluster.shard.collectives`) through torch.distributed in
the plan's communicators (Megatron's rank order: tp fastest, then cp, dp, pp), timing each kind and size.
Results are gathered to rank 0 and written as JSON; `launch` starts torchrun as a subprocess and never hangs:
the process group has a timeout, and the launch kills its process group when the wall-clock limit passes.

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m emulator.validation.distributed \
        --scenario examples/x.yaml --device cpu --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from emulator.cluster.plan import check_plan, plan_from
from emulator.cluster.shard import collectives, rank_shard, stage_params
from emulator.errors import EmulatorError
from emulator.measure.device import synchronize, use_gpu
from emulator.scenario import load_scenario
from emulator.stats import median
from emulator.workloads.program import build_step

FAIL_ENV = "EMULATOR_DIST_FAIL_RANK"  # tests: this rank exits at once, as a crashed rank would
MAX_PAYLOAD_BYTES = 64 * 2**20  # larger collectives are measured at this size and scaled (recorded as such)


def _rank_groups(plan: Any) -> dict[str, list[list[int]]]:
    """Rank lists of every communicator, rank = tp + tp*(cp + cp*(dp + dp*pp))."""
    tp, cp, dp, pp, ep = plan.tp, plan.cp, plan.dp, plan.pp, plan.ep

    def rank(t: int, c: int, d: int, p: int) -> int:
        return t + tp * (c + cp * (d + dp * p))

    groups: dict[str, list[list[int]]] = {"tp": [], "cp": [], "dp": [], "ep": [], "edp": [], "pp": []}
    for p in range(pp):
        for d in range(dp):
            for c in range(cp):
                groups["tp"].append([rank(t, c, d, p) for t in range(tp)])
        for t in range(tp):
            for d in range(dp):
                groups["cp"].append([rank(t, c, d, p) for c in range(cp)])
            flat = [rank(t, c, d, p) for d in range(dp) for c in range(cp)]
            groups["dp"].append(flat)
            groups["ep"] += [flat[i:i + ep] for i in range(0, len(flat), ep)]
            groups["edp"] += [flat[i::ep] for i in range(ep)]
    for t in range(tp):
        for d in range(dp):
            for c in range(cp):
                groups["pp"].append([rank(t, c, d, p) for p in range(pp)])
    return groups


def _time(fn: Any, device: Any, repeats: int) -> float:
    fn()  # warm-up
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        synchronize(device)
        times.append((time.perf_counter_ns() - start) * 1e-9)
    return median(times)


def _collective_fn(op: str, payload: int, group: Any, members: list[int], rank: int, device: Any) -> Any:

    p = len(members)
    elements = max(payload // 4, p)
    elements -= elements % p
    x = torch.randn(elements, device=device)
    if op == "all_reduce":
        return lambda: dist.all_reduce(x, group=group)
    if op == "all_gather":
        shard, out = x[: elements // p].clone(), torch.empty(elements, device=device)
        return lambda: dist.all_gather_into_tensor(out, shard, group=group)
    if op == "reduce_scatter":
        out = torch.empty(elements // p, device=device)
        if device.type == "cpu":  # gloo has no reduce_scatter: all-reduce then keep the rank's shard
            return lambda: dist.all_reduce(x, group=group)
        return lambda: dist.reduce_scatter_tensor(out, x, group=group)
    if op == "all_to_all":
        out = torch.empty_like(x)
        return lambda: dist.all_to_all_single(out, x, group=group)
    # send_recv: each member sends to the next and receives from the previous (a pipeline hop)
    me = members.index(rank)
    nxt, prv = members[(me + 1) % p], members[(me - 1) % p]
    buf = torch.empty_like(x)

    def hop() -> None:
        reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, x, nxt, group), dist.P2POp(dist.irecv, buf, prv, group)])
        for r in reqs:
            r.wait()
    return hop


def run_rank(scenario_path: str, device_name: str, repeats: int = 3) -> dict[str, Any] | None:
    """The body of one torchrun rank; rank 0 returns the gathered results."""


    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = use_gpu(local) if device_name == "cuda" else torch.device("cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        dist.init_process_group(backend, timeout=timedelta(seconds=120), device_id=device)
    else:
        dist.init_process_group(backend, timeout=timedelta(seconds=120))
    if os.environ.get(FAIL_ENV) == str(rank):
        os._exit(3)
    s = load_scenario(scenario_path)
    plan = plan_from(s)
    check_plan(s.model, plan, world, s.path)
    model = s.model
    shard = rank_shard(model, plan)  # type: ignore[arg-type]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    step = build_step(shard, "train", batch_size=plan.microbatch_size, seq_len=plan.seq_len // plan.cp, dtype=dtype,
                      device=device, seed=rank)
    compute_s = _time(step, device, repeats)
    params, experts = stage_params(model, shard, plan)  # type: ignore[arg-type]
    precision = s.training.precision if s.training else "bf16"
    ranks = _rank_groups(plan)
    handles: dict[str, tuple[Any, list[int]]] = {}
    for kind, lists in ranks.items():
        for members in lists:
            g = dist.new_group(members) if len(members) > 1 else None
            if rank in members:
                handles[kind] = (g, members)
    measured = []
    total = 0.0
    for call in collectives(model, shard, plan, precision, params, experts):  # type: ignore[arg-type]
        kind = str(dict(call.params)["group"])
        group, members = handles[kind]
        if group is None or len(members) < 2:
            continue
        payload = int(call.cost.comm_bytes)
        size = min(payload, MAX_PAYLOAD_BYTES)
        t = _time(_collective_fn(call.op, size, group, members, rank, device), device, repeats) * payload / size
        total += t * call.count
        measured.append({"group": kind, "op": call.op, "phase": call.phase, "payload_bytes": payload,
                         "measured_at_bytes": size, "count": call.count, "time_s": t, "total_s": t * call.count})
    dist.barrier()
    m = plan.num_microbatches
    mine = {"rank": rank, "compute_microbatch_s": compute_s, "collectives": measured,
            "step_s": compute_s * m + total, "device": str(device), "backend": dist.get_backend()}
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    dist.destroy_process_group()
    if rank != 0:
        return None
    assert gathered is not None
    return {"scenario": scenario_path, "num_ranks": world, "plan": plan.as_dict(), "backend": mine["backend"],
            "ranks": gathered, "step_s": max(r["step_s"] for r in gathered),
            "note": "step_s = micro-batches x measured compute + serial sum of measured collectives (no overlap); "
                    "gloo measures reduce_scatter as an all-reduce"}


def launch(scenario_path: str, nproc: int, device: str, *, timeout_s: float = 300) -> dict[str, Any]:
    """Run the scenario's plan on `nproc` local ranks through torchrun; the gathered measurements.

    Raises `EmulatorError` when a rank dies or the launch passes `timeout_s` (its process group is killed).
    """
    if device not in ("cpu", "cuda"):
        raise EmulatorError(f"device '{device}' is not cpu or cuda. Fix: pass --device cpu or --device cuda.",
                            field="device")
    with tempfile.TemporaryDirectory(prefix="emulator-dist-") as tmp:
        out = Path(tmp) / "result.json"
        log = Path(tmp) / "torchrun.log"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "--max-restarts=0", "-m", "emulator.validation.distributed", "--scenario", str(scenario_path),
               "--device", device, "--out", str(out)]
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        with open(log, "w") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise EmulatorError(
                    f"the torchrun launch of {nproc} ranks did not finish within {timeout_s:.0f} s and was killed "
                    f"(a rank is stuck or the plan is too large for this machine). Last output: {_tail(log)} Fix: "
                    "use a smaller scenario (fewer layers, shorter sequences) or raise the timeout.",
                    file=str(scenario_path)) from None
        if rc != 0 or not out.exists():
            raise EmulatorError(
                f"the torchrun launch of {nproc} ranks failed (exit status {rc}): a rank died, so the run was "
                f"stopped. Last output: {_tail(log)} Fix: check the message above (memory, a bad plan for "
                f"{nproc} ranks, a missing backend), then re-run.", file=str(scenario_path))
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def _tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text().strip().splitlines()
    except OSError:
        return "(no output)"
    keep = [line for line in text if line.strip()][-lines:]
    return " | ".join(keep) if keep else "(no output)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.validation.distributed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        result = run_rank(args.scenario, args.device, args.repeats)
    except EmulatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result is not None:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
