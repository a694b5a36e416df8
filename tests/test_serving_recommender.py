"""Recommender serving: embedding tables placed by access frequency per byte into the fastest tier with room."""

from __future__ import annotations

from emulator.engine.calibration import efficiency_for
from emulator.hardware import load_device
from emulator.serving.recommender import place_tables
from emulator.workloads.presets import preset


def test_mtia_puts_hot_small_tables_in_sram_and_big_ones_in_lpddr() -> None:
    """On MTIA the small, often-read tables go to SRAM; the 40M-row tables go to LPDDR."""
    mtia = load_device("mtia-v2")
    model = preset("dlrm-v2")
    p = place_tables(model, mtia, efficiency_for(mtia), "int8")
    assert p.bytes_by_tier["sram"] <= 256e6 and p.bytes_by_tier["sram"] > 0
    big = [i for i, rows in enumerate(model.embedding_rows) if rows == 40_000_000]
    assert all(p.tier_of_table[i] == "lpddr5" for i in big)


def test_gpu_keeps_every_table_in_hbm() -> None:
    """A GPU has no software-managed SRAM tier, so every table lives in HBM."""
    h100 = load_device("h100-sxm")
    p = place_tables(preset("dlrm-v2"), h100, efficiency_for(h100), "int8")
    assert set(p.tier_of_table) == {"hbm3"}
