"""Training steps as arrays over the plans sharing a rank program equal the scalar step of each plan with its own
rank program (the slow path, tests/slow_paths.py), on the shipped sizing file and training examples."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import slow_paths
from slow_paths import assert_close

import emulator.cluster.training as training
from emulator.cluster.network import Network
from emulator.cluster.shard import rank_program
from emulator.cluster.step import Overlap, StepBreakdown, training_steps
from emulator.engine.calibration import efficiency_for
from emulator.engine.stack import stack_table
from emulator.predict import predict_json
from emulator.scenario import load_scenario
from emulator.sizing import load_sizing
from emulator.sizing.search import enumerate_plans
from emulator.stacks import load_stack

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TRAINED = sorted(p.name for p in EXAMPLES.glob("*.yaml") if "training:" in p.read_text())


def _same(fast: StepBreakdown, slow: StepBreakdown) -> None:
    for field in dataclasses.fields(StepBreakdown):
        a, b = getattr(fast, field.name), getattr(slow, field.name)
        assert a == (b if field.name == "optimizer" else pytest.approx(b, rel=1e-9, abs=0.0)), field.name


@pytest.mark.parametrize("device", ["h100-sxm", "gb200"])
def test_plan_groups_step_as_each_plan_alone(device: str) -> None:
    """Every surviving plan of examples/sizing-llama3-70b-train.yaml on a device, timed as an array over its group,
    equals the scalar step of its own rank program."""
    sz = load_sizing(EXAMPLES / "sizing-llama3-70b-train.yaml")
    cand = next(c for c in sz.candidates if c.device.name == device)
    tr = sz.train
    assert tr is not None
    stack = load_stack(tr.framework, "training")
    table = stack_table(efficiency_for(cand.device), stack, cand.device.family)
    net, overlap = Network.of(cand.system), Overlap.of(stack)
    _, plans = enumerate_plans(sz, cand, {}, {})
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for plan, _ in plans:
        groups.setdefault((plan.tp, plan.pp, plan.microbatch_size, plan.recompute), []).append(plan)
    for members in list(groups.values())[::7]:
        steps = training_steps(rank_program(sz.model, members[0], tr.precision, stack=stack),  # type: ignore[arg-type]
                               members, net, cand.device, table, tr.precision, overlap=overlap)
        for i, plan in enumerate(members):
            prog = rank_program(sz.model, plan, tr.precision, stack=stack)  # type: ignore[arg-type]
            _same(steps.breakdown(i), slow_paths.training_step_slow(prog, net, cand.device, table, tr.precision,
                                                                    overlap=overlap))


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_training_predictions_equal_the_slow_step(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`predict --json` of every shipped training example is the scalar step's, to 1e-9."""
    fast = predict_json(load_scenario(EXAMPLES / name))

    def slow(*args: Any, overlap: Overlap = Overlap(), **kwargs: Any) -> StepBreakdown:  # noqa: B008
        return slow_paths.training_step_slow(*args, overlap=overlap, **kwargs)

    monkeypatch.setattr(training, "training_step", slow)
    assert_close(fast, predict_json(load_scenario(EXAMPLES / name)))


def test_a_stage_whose_chunk_holds_the_embedding_carries_a_layer_fewer() -> None:
    """With the ends in chunks of their own the micro-batch's compute is the busier of a full stage of layers and
    an end stage (a layer fewer, plus the embedding or head), not a full stage plus the ends."""
    from emulator.cluster.plan import Plan
    from emulator.cluster.step import stage_times, training_step
    from emulator.hardware import load_device, load_system
    from emulator.workloads.presets import preset

    model = preset("llama3.1-405b")
    plan = Plan(seq_len=8192, global_batch_size=16, tp=4, pp=16, virtual_stages=8, dp=1)
    device = load_device("gb200")
    table = efficiency_for(device)
    prog = rank_program(model, plan, "bf16")
    st = stage_times(prog, device, table, "bf16")
    layers = st.get("layers", "forward") + st.get("layers", "backward")
    ends = max(st.get("embed", "forward") + st.get("embed", "backward"),
               st.get("head", "forward") + st.get("head", "backward"))
    step = training_step(prog, Network.of(load_system("gb200-nvl72")), device, table, "bf16")
    expected = max(layers, layers * 7 / 8 + ends)
    assert step.compute_s == pytest.approx(expected * plan.num_microbatches + step.optimizer_s, rel=1e-9)
    assert expected < layers + ends
