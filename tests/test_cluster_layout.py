"""The plan's layout (`cluster/layout.py`): which ranks share a node, which links each communicator crosses, and each
collective's time per call and per step, adding up to the step's communication total."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.cli.layout import layout_lines
from emulator.cluster.training import predict_training
from emulator.scenario import load_scenario

TINY = ("{model_type: llama, num_hidden_layers: 4, hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 8, "
        "intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 4096}")
MOE = ("{model_type: mixtral, num_hidden_layers: 4, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 4, "
       "intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 4096, num_local_experts: 8, "
       "num_experts_per_tok: 2}")


def _predict(tmp_path: Path, system: str, devices: int, parallel: str, model: str = TINY, extra: str = ""):
    path = tmp_path / "s.yaml"
    path.write_text(f"model: {model}\nhardware: {{device: {'gb200' if 'gb200' in system else 'h100-sxm'}, "
                    f"system: {system}, num_devices: {devices}}}\ntraining: {{seq_len: 512, global_batch_size: 64, "
                    f"parallel: {parallel}{extra}}}\n")
    return predict_training(load_scenario(path))


def test_groups_sit_where_megatron_rank_order_puts_them(tmp_path: Path) -> None:
    """On 8-GPU nodes with tp 4, cp 2, dp 4, pp 2: tp and cp stay inside a node, the data-parallel group (dp x cp
    ranks, stride tp) spreads 2 per node over 4 nodes, pipeline neighbours are 32 ranks and two nodes apart."""
    p = _predict(tmp_path, "hgx-h100", 64, "{tp: 4, cp: 2, dp: 4, pp: 2}")
    layout = p.layout
    assert layout is not None and (layout.num_ranks, layout.num_nodes, layout.devices_per_node) == (64, 8, 8)
    groups = {g.name: g for g in layout.groups}
    assert set(groups) == {"tp", "cp", "dp", "pp"}  # a dense model's expert-data-parallel group carries nothing
    assert (groups["tp"].ranks, groups["tp"].nodes, groups["tp"].link) == ("0-3", 1, "scale-up")
    assert (groups["cp"].ranks, groups["cp"].nodes, groups["cp"].link) == ("0, 4", 1, "scale-up")
    dp = groups["dp"]
    assert (dp.size, dp.stride, dp.per_domain, dp.nodes, dp.link) == (8, 4, 2, 4, "scale-up + scale-out")
    assert dp.ranks == "0, 4, 8, ..., 28"
    assert (groups["pp"].ranks, groups["pp"].nodes, groups["pp"].link) == ("0, 32", 2, "scale-out")


def test_an_nvl72_domain_spans_its_trays(tmp_path: Path) -> None:
    """On GB200 NVL72 (4 GPUs a tray, 72 in one NVLink domain) tp 8 spans two trays yet stays on scale-up links."""
    p = _predict(tmp_path, "gb200-nvl72", 16, "{tp: 8, dp: 2}")
    tp = next(g for g in p.layout.groups if g.name == "tp")  # type: ignore[union-attr]
    assert (tp.nodes, tp.domains, tp.link) == (2, 1, "scale-up")


@pytest.mark.parametrize("parallel,devices,model,extra", [
    ("{tp: 4, cp: 2, dp: 4, pp: 2}", 64, TINY, ""),
    ("{tp: 2, dp: 4, zero: 3}", 8, TINY, ""),
    ("{tp: 2, dp: 4, ep: 4, pp: 2, sequence_parallel: true}", 16, MOE, ""),
    ("{tp: 2, dp: 4, pp: 2, virtual_stages: 2}", 16, TINY, ", recompute: full"),
], ids=["tp-cp-dp-pp", "fsdp", "moe", "interleaved-recompute"])
def test_collective_totals_add_up_to_the_step_total(tmp_path: Path, parallel: str, devices: int, model: str,
                                                    extra: str) -> None:
    """Per call times calls per step, summed over the rank's collectives, is the step's `communication_total_s`; the
    text names every communicator and collective with its time."""
    p = _predict(tmp_path, "hgx-h100", devices, parallel, model, extra)
    layout = p.layout
    assert layout is not None and layout.collectives
    assert sum(c.total_s for c in layout.collectives) == pytest.approx(p.step.communication_total_s, rel=1e-9)
    assert all(c.time_per_call_s > 0 and c.calls_per_step > 0 for c in layout.collectives)
    text = "\n".join(layout_lines(layout, p.plan.pp))
    for g in layout.groups:
        assert f"    {g.name} " in text
    assert text.count(" each, ") == len(layout.collectives)
    assert p.to_json()["layout"]["collectives"][0].keys() >= {"group", "op", "time_per_call_s", "total_s", "link"}


def test_one_rank_prints_no_layout(tmp_path: Path) -> None:
    """A single device has nothing to place: no layout lines in the table."""
    path = tmp_path / "s.yaml"
    path.write_text(f"model: {TINY}\nhardware: {{device: h100-sxm}}\n"
                    "training: {seq_len: 512, global_batch_size: 2}\n")
    p = predict_training(load_scenario(path))
    assert p.layout is not None and not p.layout.collectives
    assert layout_lines(p.layout) == [] and layout_lines(None) == []
