"""A target no plan meets: the report is still written (JSON, Markdown, HTML), names what binds and by how much,
and its smallest change, written into the file and searched again, meets every constraint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.cli.main import main
from emulator.sizing import Infeasible, load_sizing, size, write_report

TRAIN = """goal: train
model: llama3-8b
train: {{total_tokens: 1e12, deadline_days: {deadline}, seq_len: 4096, global_batch_size: 512}}
candidates: [{{device: h100-sxm, system: hgx-h100}}]
constraints: {constraints}
search: {{tp: [8], pp: [1], microbatch_size: [1], recompute: [none], zero: [1]}}
"""
SERVE = """goal: serve
model: {model_type: llama, num_hidden_layers: 2, hidden_size: 512, num_attention_heads: 8, num_key_value_heads: 8,
        intermediate_size: 1024, vocab_size: 4096, max_position_embeddings: 2048}
serve:
  traffic: {arrival_rate_per_s: 200000, input_tokens: 128, output_tokens: 16}
  slo: {ttft_p99_s: 0.5, tpot_p99_s: 0.05}
  precision: int8
  num_requests: 300
candidates: [{device: h100-sxm, system: hgx-h100}]
constraints: {max_devices: 2}
"""


def _write(tmp_path: Path, text: str, name: str = "sizing.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _report_of_impossible(path: Path, out: Path) -> dict[str, Any]:
    sz = load_sizing(path)
    with pytest.raises(Infeasible) as info:
        size(sz)
    write_report(info.value.result, sz, out, info.value.diagnosis)
    for name in ("report.json", "report.md", "report.html", "pareto.png"):
        assert (out / name).is_file(), name
    return dict(json.loads((out / "report.json").read_text()))


def _apply(text: str, change: dict[str, Any]) -> str:
    """The sizing file with the change's limits written in, as a user would."""
    data = yaml.safe_load(text)
    for name, value in change["limits"].items():
        for field in change["fields"][name].split(" and "):
            section, key = field.split(".")
            data.setdefault(section, {})[key] = int(value) if name == "max_devices" else value
    return yaml.safe_dump(data)


def _admits(text: str, tmp_path: Path, change: dict[str, Any]) -> list[dict[str, Any]]:
    """Searching the changed file finds a feasible target, the change's plan among the feasible plans (returned)."""
    res = size(load_sizing(_write(tmp_path, _apply(text, change), "fixed.yaml")))
    plan = change["plan"]
    feasible = [res.rows[i] for i in res.feasible]
    assert any((r["device"], r["num_devices"], r["plan"]) == (plan["device"], plan["num_devices"], plan["plan"])
               for r in feasible)
    return feasible


def test_impossible_deadline_reports_what_binds_and_a_change_that_works(tmp_path: Path) -> None:
    """A deadline no plan within the device cap meets: the report says deadline_days binds and by how much, and the
    smallest change (more devices and a later deadline, the plans over the cap evaluated) works when applied."""
    text = TRAIN.format(deadline=0.01, constraints="{max_devices: 64}")
    report = _report_of_impossible(_write(tmp_path, text), tmp_path / "out")
    d = report["infeasible"]
    deadline = next(c for c in d["constraints"] if c["constraint"] == "deadline_days")
    assert deadline["binds"] and deadline["best_meeting_others"] > 0.01 and deadline["plan"]["num_devices"] <= 64
    assert report["recommended"] is None and report["best"] == {} and report["pareto"] == []
    assert report["candidates"][0]["status"] == "misses constraints"
    smallest = d["smallest_change"]
    assert smallest["beyond_cap"] and smallest["plan"]["num_devices"] > 64
    assert smallest["limits"]["deadline_days"] < deadline["best_meeting_others"]
    md = (tmp_path / "out" / "report.md").read_text()
    page = (tmp_path / "out" / "report.html").read_text()
    for text_out in (md, page):
        assert "What binds" in text_out and smallest["settings"].replace(">", "&gt;") in text_out.replace(">", "&gt;")
    _admits(text, tmp_path, smallest)
    alone = [a for a in d["alternatives"] if list(a["limits"]) == ["deadline_days"]]
    assert alone and not alone[0]["beyond_cap"]
    _admits(text, tmp_path, alone[0])


def test_impossible_power_cap_change_is_rechecked(tmp_path: Path) -> None:
    """A power cap below every plan's draw: every change the report suggests meets every constraint once written
    into the file, and the smallest one moves the limits least."""
    text = TRAIN.format(deadline=30, constraints="{power_cap_mw: 0.0001}")
    d = _report_of_impossible(_write(tmp_path, text), tmp_path / "out")["infeasible"]
    assert next(c for c in d["constraints"] if c["constraint"] == "power_cap_mw")["binds"]
    changes = [d["smallest_change"], *d["alternatives"]]
    assert all(d["smallest_change"]["relative"] <= c["relative"] for c in changes)
    assert any(list(c["limits"]) == ["power_cap_mw"] for c in changes)
    for change in changes:
        _admits(text, tmp_path, change)


def test_nothing_within_the_cap_raises_it(tmp_path: Path) -> None:
    """When every plan is over the device cap, the report still answers the candidate ('no plan') and the change
    raises the cap to the smallest count that meets every constraint."""
    text = TRAIN.format(deadline=365, constraints="{max_devices: 4}")
    report = _report_of_impossible(_write(tmp_path, text), tmp_path / "out")
    assert report["candidates"][0]["status"] == "no plan" and "device count" in report["candidates"][0]["verdict"]
    change = report["infeasible"]["smallest_change"]
    assert list(change["limits"]) == ["max_devices"] and change["limits"]["max_devices"] > 4
    assert change["limits"]["max_devices"] == change["plan"]["num_devices"]
    feasible = _admits(text, tmp_path, change)
    # the smallest cap: the searched file has no feasible plan with fewer devices than the cap it was given
    assert min(r["num_devices"] for r in feasible) == change["limits"]["max_devices"]


def test_serving_device_cap_binds(tmp_path: Path) -> None:
    """A serving target whose traffic needs more replicas than the device cap allows names the cap and the count
    that carries it; the changed file is feasible."""
    report = _report_of_impossible(_write(tmp_path, SERVE), tmp_path / "out")
    d = report["infeasible"]
    assert [c["constraint"] for c in d["constraints"] if c["binds"]] == ["max_devices"]
    change = d["smallest_change"]
    assert change["fields"] == {"max_devices": "constraints.max_devices"} and change["limits"]["max_devices"] > 2
    assert report["candidates"][0]["misses"][0]["constraint"] == "max_devices"
    _admits(SERVE, tmp_path, change)


def test_cli_writes_the_report_then_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`emulator size` on an impossible file writes the report folder, prints report.json with --json, and exits 2
    with one paragraph naming the binding constraint, the fix and the report."""
    path = _write(tmp_path, TRAIN.format(deadline=30, constraints="{power_cap_mw: 0.0001}"))
    out = tmp_path / "out"
    assert main(["size", str(path), "--out", str(out), "--quiet", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["infeasible"]["smallest_change"] is not None
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "power_cap_mw binds" in err and "constraints.power_cap_mw >=" in err and f"{out}/report.md" in err
    assert (out / "report.html").is_file()


def test_nothing_fits_in_memory_says_so(tmp_path: Path) -> None:
    """When every plan is pruned by memory, the report answers the candidate ('no plan', memory named), suggests no
    limit change, and says which change would help (not re-evaluated); the empty plots still draw."""
    text = """goal: train
model: llama3-70b
train: {total_tokens: 1e12, deadline_days: 30, seq_len: 4096, global_batch_size: 64}
candidates: [{device: h100-sxm, system: hgx-h100}]
search: {tp: [1], pp: [1], microbatch_size: [1], recompute: [none], zero: [0]}
"""
    report = _report_of_impossible(_write(tmp_path, text), tmp_path / "out")
    cand = report["candidates"][0]
    assert cand["status"] == "no plan" and cand["best"] is None and "memory" in cand["verdict"]
    d = report["infeasible"]
    assert d["smallest_change"] is None and d["alternatives"] == []
    assert any(n.startswith("memory:") and "not re-evaluated" in n for n in d["notes"])
    assert "memory" in d["message"] and "no plan survives pruning" in (tmp_path / "out" / "report.md").read_text()
