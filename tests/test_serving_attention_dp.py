"""Attention data parallelism in a serving replica (`serving.attention_dp`): memory, KV, step model, balance wait,
scenario keys, AIConfigurator rows and launch files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from emulator.cluster.network import Group, Network
from emulator.engine.calibration import efficiency_for
from emulator.engine.memory import kv_bytes_per_token, serving_weight_bytes
from emulator.errors import EmulatorError
from emulator.hardware import load_system
from emulator.launch.serving import replica_of, sglang_files, trtllm_files, vllm_files
from emulator.predict import predict_json
from emulator.scenario import load_scenario
from emulator.serving.replica import Scheduling, build_replica
from emulator.serving.simulator import Requests, simulate
from emulator.serving.stepcomm import attention_dp_comm_s
from emulator.stacks import load_stack
from emulator.validation import published_aic as pa
from emulator.validation.aic_deployments import MTP_ACCEPTANCE
from emulator.workloads.presets import preset

SYSTEM = load_system("hgx-h200")
MOE = dataclasses.replace(preset("deepseek-v3"), num_layers=5)  # three dense layers, two MoE layers
TABLE = efficiency_for(SYSTEM.device)


def _replica(attention_dp: bool, **kw: object):  # type: ignore[no-untyped-def]
    return build_replica(MOE, SYSTEM.device, SYSTEM, TABLE, precision="fp8", kv_precision="fp8", tp=8, ep=8,
                         engine="trtllm", attention_dp=attention_dp, **kw)  # type: ignore[arg-type]


def test_each_rank_holds_whole_weights_but_its_experts_and_its_own_tokens() -> None:
    """A rank holds the non-expert weights whole and 1/8 of the routed experts; a token's KV (MLA's latent,
    which tensor parallelism replicates on every rank) lives on one rank, so the replica holds 8 pools; the token
    budget and the running-sequence cap are the engine's per rank, 8 times over."""
    tp, dp = _replica(False), _replica(True)
    experts = MOE.num_routed_expert_params() * 1.0  # fp8: a byte each
    assert dp.weight_bytes == pytest.approx(serving_weight_bytes(MOE, "fp8", 1, False) - experts * 7 / 8)
    assert dp.kv_bytes_per_token == kv_bytes_per_token(MOE, "fp8", 1) == tp.kv_bytes_per_token  # MLA: replicated
    assert dp.kv_capacity_tokens % 8 == 0 and dp.kv_cache_bytes == pytest.approx(
        dp.kv_capacity_tokens * dp.kv_bytes_per_token)
    assert dp.memory_parts()["kv_cache"] == pytest.approx(dp.kv_capacity_tokens / 8 * dp.kv_bytes_per_token)
    assert dp.max_batch_tokens == 8 * tp.max_batch_tokens and dp.max_sequences == 8 * tp.max_sequences
    assert dp.describe().as_dict()["attention_dp"] is True and tp.describe().as_dict()["attention_dp"] is False


def test_the_step_gathers_tokens_per_moe_layer_and_spreads_them_over_the_ranks() -> None:
    """An iteration of n tokens: each rank's part at n/8 tokens, the experts at n, and per MoE layer an
    all-gather and a reduce-scatter of [n, hidden] over the 8 ranks; the KV slope is one rank's over 8."""
    dp = _replica(True)
    assert dp.step.grid[0] == 8.0 and dp.step.grid[-1] == 8.0 * 16384
    net, n = Network.of(SYSTEM), 1024
    gathered = n * MOE.hidden_size * 2
    each = net.time("all_gather", gathered, Group(8)) + net.time("reduce_scatter", gathered, Group(8))
    assert attention_dp_comm_s(MOE, SYSTEM, 8, n) == pytest.approx(MOE.num_moe_layers * each)
    assert attention_dp_comm_s(preset("llama3-8b"), SYSTEM, 8, n) == 0.0  # nothing to gather without experts
    alone = build_replica(MOE, SYSTEM.device, SYSTEM, TABLE, precision="fp8", kv_precision="fp8", tp=1, ep=1,
                          engine="trtllm")
    assert dp.step.kv_s_per_token == pytest.approx(alone.step.kv_s_per_token / 8, rel=0.02)
    assert dp.step.decode_s(8) < dp.step.decode_s(8 * 64)


def test_attention_dp_needs_experts_and_ranks() -> None:
    with pytest.raises(EmulatorError) as e:
        build_replica(preset("llama3-8b"), SYSTEM.device, SYSTEM, TABLE, precision="fp8", kv_precision="fp8", tp=8,
                      attention_dp=True)
    assert e.value.field == "inference.parallel.attention_dp" and "Fix:" in e.value.message
    with pytest.raises(EmulatorError) as e:
        build_replica(MOE, SYSTEM.device, None, TABLE, precision="fp8", kv_precision="fp8", attention_dp=True)
    assert e.value.field == "inference.parallel.attention_dp"
    with pytest.raises(EmulatorError) as e:
        build_replica(MOE, SYSTEM.device, SYSTEM, TABLE, precision="fp8", kv_precision="fp8", tp=4, pp=2, ep=4,
                      attention_dp=True)
    assert e.value.field == "inference.parallel.pp" and "Fix:" in e.value.message


def test_the_balance_waits_for_a_prompt_per_rank() -> None:
    """TensorRT-LLM's enable_balance: with 8 ranks, prompts wait (up to the timeout) for ceil(8 x H(8)) = 22 of them;
    without attention data parallelism, or with the item at 0, they never wait."""
    stack = load_stack("trtllm", "serving").with_settings((("scheduler.adp_balance_iters", 60),))
    on = Scheduling.of(stack, 8)
    assert (on.batch_wait_iters, on.batch_wait_prompts) == (60, 22)
    assert Scheduling.of(stack, 1).batch_wait_prompts == 0 == Scheduling.of(load_stack("trtllm", "serving"), 8) \
        .batch_wait_prompts


def test_the_simulator_holds_prompts_until_enough_are_pending() -> None:
    """Prompts arriving while a sequence decodes wait until `batch_wait_prompts` of them are pending (or the
    timeout): the third arrival releases all three together."""
    step = _replica(False).step
    reqs = Requests(np.array([0.0, 0.5, 0.6, 0.7]), np.array([100, 100, 100, 100]), np.array([4000, 4, 4, 4]))
    common = {"max_batch": 8, "max_batch_tokens": 4096}
    held = simulate(step, 100_000, reqs, **common,  # type: ignore[arg-type]
                    scheduling=Scheduling(batch_wait_iters=1000, batch_wait_prompts=3))
    plain = simulate(step, 100_000, reqs, **common)  # type: ignore[arg-type]
    assert held.first_token_s[1] == held.first_token_s[2] == held.first_token_s[3] > 0.7
    assert plain.first_token_s[1] < 0.6


SCENARIO = """model: deepseek-v3
hardware: {device: h200-sxm, system: hgx-h200, num_devices: 8}
inference:
  engine: ENGINE
  precision: fp8
  parallel: {tp: 8, ep: 8, attention_dp: ADP}
  input_tokens: 1024
  output_tokens: 64
  concurrency: 64
"""


def test_the_scenario_key_reaches_the_prediction_and_the_launch_files(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("ENGINE", "trtllm").replace("ADP", "true"))
    s = load_scenario(str(path))
    assert s.serving is not None and s.serving.attention_dp is True
    assert predict_json(s)["replica"]["attention_dp"] is True
    r = replica_of(s, load_stack("trtllm", "serving"), 64, 1)
    assert r.attention_dp and "enable_attention_dp: true" in trtllm_files(s, r, load_stack("trtllm", "serving"),
                                                                          [])[1].text
    assert "--max_batch_size 8" in trtllm_files(s, r, load_stack("trtllm", "serving"), [])[0].text
    vllm = vllm_files(s, r, load_stack("vllm", "serving"), [])[0].text
    assert "--data-parallel-size 8" in vllm and "--tensor-parallel-size 1" in vllm
    assert "--enable-dp-attention" in sglang_files(s, r, load_stack("sglang", "serving"), [])[0].text
    path.write_text(SCENARIO.replace("ENGINE", "trtllm").replace("ADP", "yes please"))
    with pytest.raises(EmulatorError) as e:
        load_scenario(str(path))
    assert "attention_dp" in (e.value.field or "")


def test_aiconfigurator_dp_attention_rows_map_to_replicas_of_attention_ranks() -> None:
    """InferenceX's DeepSeek-R1 DP-attention rows (attention_dp_size 8, tp_size 1): a replica of 8 ranks with
    attention_dp, its batch_size per rank (concurrency x 8), MTP 1 and the script's per-rank token budget."""
    rows = [r for r in pa.rows() if pa.attention_ranks(r) == 8 and _ok(r)]
    assert rows
    for row in rows:
        s, spec = pa.scenario_of(row)
        assert (spec.tp, spec.ep, spec.attention_dp) == (8, 8, True)
        assert spec.concurrency == 8 * int(row["batch_size"]) and spec.speculative == (1, (MTP_ACCEPTANCE,))
        assert spec.max_batch_tokens == (2 * int(row["batch_size"]) + int(row["isl"]) + 127) // 64 * 64
        assert dict(spec.engine_settings)["scheduler.adp_balance_iters"] == 60


def _ok(row: dict[str, str]) -> bool:
    return pa.skip_reason(row) is None


SIZING = """goal: serve
model: {model_type: mixtral, num_hidden_layers: 2, hidden_size: 512, num_attention_heads: 8, num_key_value_heads: 8,
        intermediate_size: 1024, num_local_experts: 8, num_experts_per_tok: 2, vocab_size: 4096,
        max_position_embeddings: 2048}
serve:
  traffic: {arrival_rate_per_s: 200, input_tokens: 128, output_tokens: 16}
  slo: {ttft_p99_s: 0.5, tpot_p99_s: 0.05}
  precision: fp8
  num_requests: 300
candidates: [{device: h100-sxm, system: hgx-h100}]
"""


def test_a_moe_serving_sizing_also_tries_attention_dp_layouts(tmp_path: Path) -> None:
    """For a MoE model the serving search tries each layout of two or more ranks also with attention data
    parallel and the experts over all ranks, and says so in the row's plan; a dense model's plans are unchanged."""
    from emulator.sizing import load_sizing, size

    path = tmp_path / "serve.yaml"
    path.write_text(SIZING)
    rows = size(load_sizing(path)).rows
    plans = [r["plan"] for r in rows]
    adp_plans = [p for p in plans if p.get("attention_dp")]
    assert adp_plans and all(p["ep"] == p["tp"] > 1 for p in adp_plans)
    assert {p["tp"] for p in adp_plans} <= {p["tp"] for p in plans if not p.get("attention_dp")}
    assert all("attention_dp" not in p and "ep" not in p for p in plans if not p.get("attention_dp"))
