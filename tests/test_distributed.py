"""Measured collectives: two CPU ranks under torchrun with gloo run the per-rank program; a dead rank fails fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.cluster.plan import Plan
from emulator.errors import EmulatorError
from emulator.validation.distributed import FAIL_ENV, _rank_groups, launch

SCENARIO = """\
model: {model_type: llama, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2,
        intermediate_size: 128, vocab_size: 256, max_position_embeddings: 128}
hardware: {device: h100-sxm, num_devices: 2}
training:
  seq_len: 32
  global_batch_size: 2
  precision: fp32
  parallel: {tp: 2, sequence_parallel: true}
"""


@pytest.fixture()
def scenario(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO)
    return str(path)


def test_rank_groups_follow_megatron_order() -> None:
    """tp groups are consecutive ranks, dp groups stride tp, pipeline groups stride tp*dp."""
    g = _rank_groups(Plan(tp=2, dp=2, pp=2))
    assert g["tp"][0] == [0, 1] and g["dp"][0] == [0, 2] and g["pp"][0] == [0, 4]


def test_two_gloo_ranks_measure_the_plans_collectives(scenario: str) -> None:
    """Two CPU ranks run their shard and the tp collectives of sequence parallelism (all-gather and
    reduce-scatter, nothing else at dp 1); each rank's step is its micro-batches' compute plus its collectives,
    and rank 0 gathers both ranks, the slower one setting the step."""
    out = launch(scenario, 2, "cpu", timeout_s=240)
    assert out["num_ranks"] == 2 and out["backend"] == "gloo"
    assert [r["rank"] for r in out["ranks"]] == [0, 1]
    for r in out["ranks"]:
        assert {(c["group"], c["op"]) for c in r["collectives"]} == {("tp", "all_gather"), ("tp", "reduce_scatter")}
        assert r["compute_microbatch_s"] > 0
        collectives_s = sum(c["total_s"] for c in r["collectives"])
        assert r["step_s"] == pytest.approx(out["plan"]["num_microbatches"] * r["compute_microbatch_s"] + collectives_s)
    assert out["step_s"] == max(r["step_s"] for r in out["ranks"])


def test_a_dead_rank_fails_the_launch_quickly(scenario: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank that exits makes launch raise EmulatorError saying a rank died, without waiting for the time limit
    (which would say the launch did not finish)."""
    monkeypatch.setenv(FAIL_ENV, "1")
    with pytest.raises(EmulatorError, match="a rank died"):
        launch(scenario, 2, "cpu", timeout_s=180)


def test_timeout_kills_the_launch(scenario: str) -> None:
    """A launch past its wall-clock limit is killed and reported."""
    with pytest.raises(EmulatorError, match="did not finish"):
        launch(scenario, 2, "cpu", timeout_s=0.5)
