"""Plans: validation with advice, and the per-rank program (shard shapes and the collectives it issues)."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.cluster.plan import Plan, check_plan, plan_warnings
from emulator.cluster.shard import collectives, rank_program, rank_shard, shard_config, stage_params
from emulator.errors import EmulatorError
from emulator.workloads.presets import preset

LLAMA = preset("llama3-70b")  # 64 heads, 8 KV heads, 80 layers
MIXTRAL = preset("mixtral-8x7b")  # 8 experts


def _plan(**kw: object) -> Plan:
    base: dict[str, object] = {"seq_len": 4096, "global_batch_size": 64}
    return Plan(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("kw, field, words", [
    ({"tp": 3, "dp": 1}, "tp", "divides the heads"),
    ({"pp": 3}, "", "num_devices"),
    ({"tp": 8, "dp": 2}, "", "hardware.num_devices"),
    ({"pp": 2, "virtual_stages": 3, "global_batch_size": 3}, "virtual_stages", "multiple of pp"),
    ({"dp": 3, "global_batch_size": 64}, "microbatch_size", "global batch"),
])
def test_bad_plans_name_field_and_fix(kw: dict[str, object], field: str, words: str) -> None:
    """A plan that cannot run raises an EmulatorError naming the field and a fix."""
    plan = _plan(**kw)
    devices = 8 if kw.get("tp") == 8 else plan.num_devices + (1 if field == "" and "pp" in kw else 0)
    with pytest.raises(EmulatorError) as e:
        check_plan(LLAMA, plan, devices, "s.yaml")
    assert "Fix" in str(e.value) and words in str(e.value)


def test_experts_must_divide_by_ep() -> None:
    """Experts not divisible by ep, or ep on a dense model, are errors with advice."""
    with pytest.raises(EmulatorError, match="experts are not divisible by ep 3"):
        check_plan(MIXTRAL, _plan(dp=3, ep=3, global_batch_size=3), 3)
    with pytest.raises(EmulatorError, match="dense"):
        check_plan(LLAMA, _plan(dp=2, ep=2), 2)


def test_expert_parallelism_folds_tensor_context_and_data_ranks() -> None:
    """Megatron-Core's rule: ep x etp divides tp x cp x dp, so experts may span tensor-parallel ranks (ep 8 on
    tp 4 x dp 2 runs; the old dp x cp rule refused it), and edp is what is left."""
    plan = _plan(tp=4, dp=2, ep=8, sequence_parallel=True, global_batch_size=8)
    check_plan(MIXTRAL, plan, 8)
    assert plan.edp == 1 and _plan(tp=4, dp=4, ep=2, etp=2, global_batch_size=8).edp == 4
    with pytest.raises(EmulatorError, match=r"ep\*etp = 8\*2 must divide tp\*cp\*dp = 8"):
        check_plan(MIXTRAL, _plan(tp=4, dp=2, ep=8, etp=2, global_batch_size=8), 8)
    with pytest.raises(EmulatorError, match="dense"):
        check_plan(LLAMA, _plan(tp=2, etp=2), 2)


def test_etp_splits_the_experts_a_rank_holds() -> None:
    """With etp 1 a tp-2 rank holds its experts whole; with etp 2 half of each: memory follows etp."""
    whole, split = _plan(tp=2, dp=4, ep=4, etp=1), _plan(tp=2, dp=4, ep=4, etp=2)
    _, experts_whole = stage_params(MIXTRAL, rank_shard(MIXTRAL, whole), whole)
    _, experts_split = stage_params(MIXTRAL, rank_shard(MIXTRAL, split), split)
    per_expert = 3 * MIXTRAL.hidden_size * MIXTRAL.moe_ffn_hidden_size * MIXTRAL.num_layers
    assert experts_whole == 2 * per_expert  # 8 experts over ep 4: two a rank, whole
    assert experts_split == per_expert  # the same two, half each


def test_uneven_pipeline_is_a_warning() -> None:
    """126 layers over 16 stages predicts (the slowest stage sets the pace) and says so."""
    model = preset("llama3.1-405b")
    plan = _plan(tp=8, pp=16, dp=2)
    check_plan(model, plan, plan.num_devices)
    assert any("slowest stage holds 8 layers" in w for w in plan_warnings(model, plan))


def test_the_embedding_and_the_loss_may_take_a_chunk_each() -> None:
    """Megatron-Core's account_for_embedding/loss_in_pipeline_split: 126 layers fill 16 x 8 = 128 chunks (the
    busiest rank holds 8 layers, the ends' ranks 7 and the embedding or the loss); 129 chunks are refused."""
    model = preset("llama3.1-405b")
    plan = _plan(tp=4, pp=16, virtual_stages=8, dp=1, global_batch_size=16)
    check_plan(model, plan, plan.num_devices)
    program = rank_program(model, plan, "bf16")
    assert (program.num_layers, program.end_chunks) == (8, 2)
    assert rank_program(model, _plan(tp=8, pp=16, dp=2), "bf16").end_chunks == 0
    with pytest.raises(EmulatorError, match="even with the embedding and the loss"):
        bad = _plan(tp=4, pp=43, virtual_stages=3, dp=1, global_batch_size=43)
        check_plan(model, bad, bad.num_devices)


def test_shard_config_is_one_ranks_slice() -> None:
    """tp 8 gives each rank 8 query heads, 1 KV head, ffn/8, vocab/8, and the stage's layers."""
    shard = rank_shard(LLAMA, _plan(tp=8, pp=4))
    assert (shard.num_heads, shard.num_kv_heads, shard.head_dim) == (8, 1, 128)
    assert shard.ffn_hidden_size == LLAMA.ffn_hidden_size // 8
    assert shard.vocab_size == LLAMA.vocab_size // 8
    assert shard.num_layers == 20


def test_stage_params_sum_to_the_model() -> None:
    """With pp 1 and tp 1 the rank holds every parameter."""
    plan = _plan()
    params, experts = stage_params(LLAMA, rank_shard(LLAMA, plan), plan)
    assert params == LLAMA.num_params() and experts == 0


def test_moe_shard_holds_its_experts() -> None:
    """ep 4 leaves 2 of Mixtral's 8 experts on each rank, top-2 kept."""
    shard = rank_shard(MIXTRAL, _plan(dp=4, ep=4))
    assert (shard.num_experts, shard.num_experts_per_token) == (2, 2)


def test_a_rank_with_fewer_experts_than_the_top_k_still_computes_k_per_token() -> None:
    """ep 8 leaves Mixtral one expert per rank, fewer than its top-2: a token picks that one at most, but the
    all-to-all brings each rank two assignments per token of its own, so its expert GEMMs do the work they do at ep
    4 (where two local experts take one each)."""
    model = MIXTRAL.scaled(num_layers=1)
    shard = rank_shard(model, _plan(seq_len=512, global_batch_size=8, dp=8, ep=8))
    assert (shard.num_experts, shard.num_experts_per_token, shard.routed_per_token) == (1, 1, 2.0)

    def expert_flops(ep: int) -> float:
        prog = rank_program(model, _plan(seq_len=512, global_batch_size=8, dp=8, ep=ep), "bf16")
        return sum(c.cost.matrix_flops * c.count for c in prog.compute
                   if c.family == "gemm" and c.module == "layers.0.feed_forward")  # the experts' GEMMs

    assert expert_flops(8) == pytest.approx(expert_flops(4), rel=1e-9)
    assert expert_flops(8) > 0


def test_one_shard_config_for_training_and_serving() -> None:
    """A serving replica's rank and a training rank are the same slice: tp-split heads, ffn and vocabulary, ep
    groups of experts split `expert_tp` ways; a replica's expert-parallel rank routes 1/ep of the batch's
    assignments (its tp ranks share one batch), a training rank all of its own tokens'."""
    from emulator.serving.replica import shard as replica_shard

    assert replica_shard(MIXTRAL, 4, 2) == dataclasses.replace(shard_config(MIXTRAL, tp=4, ep=2, expert_tp=2),
                                                               num_experts_per_token=1)
    assert rank_shard(MIXTRAL, _plan(tp=4, dp=2, ep=2, sequence_parallel=True)) == shard_config(
        MIXTRAL, tp=4, ep=2, expert_tp=4, num_layers=MIXTRAL.num_layers)


def _ops(plan: Plan, model=LLAMA) -> dict[tuple[str, str, str], int]:  # type: ignore[no-untyped-def]
    shard = rank_shard(model, plan)
    params, experts = stage_params(model, shard, plan)
    out: dict[tuple[str, str, str], int] = {}
    for c in collectives(model, shard, plan, "bf16", params, experts):
        group = dict(c.params)["group"]
        out[(group, c.op, c.phase)] = out.get((group, c.op, c.phase), 0) + c.count
    return out


def test_tensor_parallel_collectives_per_layer() -> None:
    """Two all-reduces per layer and direction; with sequence parallelism two all-gathers and two reduce-scatters."""
    n = 80
    plain = _ops(_plan(tp=8))
    assert plain[("tp", "all_reduce", "forward")] == 2 * n + 1  # + the embedding's
    assert plain[("tp", "all_reduce", "backward")] == 2 * n
    sp = _ops(_plan(tp=8, sequence_parallel=True))
    assert sp[("tp", "all_gather", "forward")] == 2 * n
    assert sp[("tp", "reduce_scatter", "backward")] == 2 * n
    full = _ops(_plan(tp=8, recompute="full"))
    assert full[("tp", "all_reduce", "forward")] == 4 * n + 1


def test_data_parallel_collectives_follow_zero_stage() -> None:
    """ZeRO-0 all-reduces gradients once; ZeRO-1 reduce-scatters and all-gathers; ZeRO-3 gathers per layer."""
    assert _ops(_plan(dp=8))[("dp", "all_reduce", "optimizer")] == 1
    z1 = _ops(_plan(dp=8, zero=1))
    assert z1[("dp", "reduce_scatter", "optimizer")] == 1 and z1[("dp", "all_gather", "optimizer")] == 1
    z3 = _ops(_plan(dp=8, fsdp=True))
    assert z3[("dp", "all_gather", "forward")] == 80 and z3[("dp", "reduce_scatter", "backward")] == 80


def test_pipeline_context_and_expert_collectives() -> None:
    """pp sends per chunk, cp ring steps per layer, ep all-to-alls per MoE layer."""
    assert _ops(_plan(pp=4, virtual_stages=2))[("pp", "send_recv", "forward")] == 2
    assert _ops(_plan(cp=4))[("cp", "send_recv", "forward")] == 80 * 3
    moe = _ops(_plan(dp=8, ep=8), MIXTRAL)
    assert moe[("ep", "all_to_all", "forward")] == 2 * 32


def test_the_flex_dispatcher_sends_deduplicated_dispatches() -> None:
    """With `moe.token_dispatcher: flex` (DeepEP, HybridEP) each MoE layer's dispatch and combine are `dispatch`
    calls carrying the model's top-k as their fanout, the payload the all-to-all's (one copy per routed expert)."""
    plan = _plan(dp=8, ep=8)
    shard = rank_shard(MIXTRAL, plan)
    params, experts = stage_params(MIXTRAL, shard, plan)
    a2a = [c for c in collectives(MIXTRAL, shard, plan, "bf16", params, experts) if c.op == "all_to_all"]
    flex = [c for c in collectives(MIXTRAL, shard, plan, "bf16", params, experts, dispatcher="flex")
            if dict(c.params)["group"] == "ep"]
    assert [c.op for c in flex] == ["dispatch", "dispatch"] and [c.count for c in flex] == [c.count for c in a2a]
    assert all(dict(c.params)["fanout"] == MIXTRAL.num_experts_per_token for c in flex)
    assert [c.cost.comm_bytes for c in flex] == [c.cost.comm_bytes for c in a2a]


def test_rank_program_reuses_traces_across_dp() -> None:
    """Plans that differ only in dp share one traced shard."""
    a = rank_program(LLAMA.scaled(num_layers=2), _plan(tp=8, dp=2), "bf16")
    b = rank_program(LLAMA.scaled(num_layers=2), _plan(tp=8, dp=4), "bf16")
    assert a.trace is b.trace and a.compute
