"""The report folder: one answer per candidate, the same tables in Markdown, HTML and JSON, a de-duplicated Pareto
front, captions printed once, plots that tell devices apart, and the HTML rendering cleanly in headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from emulator.sizing import load_sizing, size, write_report

# A 2-day deadline: GB200 and B200 make it within 512 devices, H100 (fastest 2.4 days) does not.
SIZING = """goal: train
model: llama3-8b
train: {total_tokens: 1e12, deadline_days: 2, seq_len: 4096, global_batch_size: 256}
candidates: [{device: h100-sxm, system: hgx-h100}, {device: b200, system: hgx-b200},
             {device: gb200, system: gb200-nvl72}]
constraints: {max_devices: 512, power_cap_mw: 5}
search: {tp: [2, 8], pp: [1, 2], microbatch_size: [1], recompute: [none], zero: [1, 2]}
"""
SERVE = """goal: serve
model: {model_type: llama, num_hidden_layers: 2, hidden_size: 512, num_attention_heads: 8, num_key_value_heads: 8,
        intermediate_size: 1024, vocab_size: 4096, max_position_embeddings: 2048}
serve:
  traffic: {arrival_rate_per_s: 200, input_tokens: 128, output_tokens: 16}
  slo: {ttft_p99_s: 0.5, tpot_p99_s: 0.05}
  precision: int8
  num_requests: 300
candidates: [{device: mtia-v2, system: mtia-rack}, {device: h100-sxm, system: hgx-h100}]
"""
PNG = b"\x89PNG\r\n\x1a\n"


def _md_tables(md: str) -> list[list[str]]:
    """Each Markdown table as its lines (header first)."""
    tables: list[list[str]] = []
    for block in md.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if lines:
            tables.append(lines)
    return tables


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    path = folder / "train.yaml"
    path.write_text(SIZING)
    sz = load_sizing(path)
    write_report(size(sz), sz, folder / "out")
    return folder / "out"


def test_report_files_exist(report_dir: Path) -> None:
    """report.json, report.md, report.html and the four training plots are written."""
    for name in ("report.json", "report.md", "report.html", "roofline.png", "breakdown.png", "scaling.png",
                 "pareto.png"):
        assert (report_dir / name).is_file(), name
        if name.endswith(".png"):
            assert (report_dir / name).read_bytes().startswith(PNG)
    md = (report_dir / "report.md").read_text()
    assert "provenance" in md and "error band" in md and "Economics inputs" in md


def test_html_images_are_png_data_uris(report_dir: Path) -> None:
    """Every <img> of the HTML is a data: URI that decodes to a PNG; nothing is loaded from elsewhere."""
    page = (report_dir / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "http://" not in page and "https://" not in page and "<script" not in page


def _report(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "report.json").read_text()))


def test_one_answer_per_candidate(report_dir: Path) -> None:
    """report.json answers every candidate: the recommended one, one that meets every limit but costs more, and one
    whose closest plan misses the deadline, each with its count, time, MW, energy, capex, cost and provenance."""
    report = _report(report_dir)
    by_device = {c["device"]: c for c in report["candidates"]}
    assert list(by_device) == ["h100-sxm", "b200", "gb200"]
    assert by_device["gb200"]["status"] == "recommended" and by_device["gb200"]["best"] == report["recommended"]
    assert by_device["b200"]["status"] == "feasible" and "cost against the recommended" in by_device["b200"]["verdict"]
    h100 = by_device["h100-sxm"]
    assert h100["status"] == "misses constraints" and [m["constraint"] for m in h100["misses"]] == ["deadline_days"]
    assert h100["misses"][0]["value"] > 2 and "deadline_days" in h100["verdict"]
    for c in report["candidates"]:
        best = c["best"]
        for key in ("num_devices", "effective_time_to_train_s", "facility_mw", "energy_mwh", "capex_usd", "cost_usd",
                    "cost_per_million_tokens_usd", "provenance", "error_band"):
            assert best[key] is not None, (c["device"], key)
        # capex buys the whole cluster; with capex pricing the run pays its amortised share plus energy
        assert best["capex_usd"] > best["cost_usd"] - best["energy_cost_usd"] > 0


def test_rejections_per_candidate_add_up(report_dir: Path) -> None:
    """Each candidate's plans add up (enumerated = rejected before timing + evaluated; evaluated = feasible + missed
    limits), and the per-candidate reasons sum to the search's totals."""
    report = _report(report_dir)
    limits = ("deadline_days", "power_cap_mw", "budget_usd", "max_devices")
    totals: dict[str, int] = {}
    for c in report["candidates"]:
        pruned = sum(n for k, n in c["rejected"].items() if k not in limits)
        missed = sum(n for k, n in c["rejected"].items() if k in limits)
        assert c["plans"]["enumerated"] == pruned + c["plans"]["evaluated"]
        assert c["plans"]["evaluated"] == c["plans"]["feasible"] + missed
        for k, n in c["rejected"].items():
            totals[k] = totals.get(k, 0) + n
    assert totals == {k: v["count"] for k, v in report["search"]["rejected"].items()}
    assert sum(c["plans"]["enumerated"] for c in report["candidates"]) == report["search"]["enumerated"]


def test_markdown_and_html_show_every_candidate(report_dir: Path) -> None:
    """report.md and report.html hold one row per candidate with its device count, capex and cost, and the same
    tables (the Pareto front included) in the same order."""
    report = _report(report_dir)
    md = (report_dir / "report.md").read_text()
    page = (report_dir / "report.html").read_text()
    tables = _md_tables(md)
    per_candidate = next(t for t in tables if "capex (USD)" in t[0] and "verdict" in t[0])
    assert len(per_candidate) == 2 + len(report["candidates"])
    for c, line in zip(report["candidates"], per_candidate[2:], strict=True):
        best = c["best"]
        for text in (c["device"], c["status"], f"{best['num_devices']:,}", f"{best['capex_usd']:,.0f}",
                     f"{best['cost_usd']:,.0f}", f"{best['facility_mw']:,.3f}"):
            assert text in line
            assert text in page
    assert page.count("<table>") == len(tables)
    heads = re.findall(r"<thead><tr>(.*?)</tr></thead>", page)
    assert [re.findall(r"<th>(.*?)</th>", h) for h in heads] == [
        [c.strip() for c in t[0].strip("|").split("|")] for t in tables]
    assert "<h2>Pareto front</h2>" in page and "## Pareto front" in md


def test_pareto_front_has_no_repeated_points(report_dir: Path) -> None:
    """Plans reaching the same point (here ZeRO 1 and 2) are one Pareto row that counts them and names what varies."""
    report = _report(report_dir)
    points = [(r["device"], r["num_devices"], r["effective_time_to_train_s"], r["cost_usd"], r["facility_mw"])
              for r in report["pareto"]]
    assert len(points) == len(set(points)) == report["search"]["pareto_points"]
    assert sum(r["equivalent"]["num_plans"] for r in report["pareto"]) == report["search"]["pareto"]
    folded = [r for r in report["pareto"] if r["equivalent"]["num_plans"] > 1]
    assert folded and all(set(r["equivalent"]["vary"]) <= {"zero", "recompute"} for r in folded)


def test_each_caption_is_printed_once(report_dir: Path) -> None:
    """Every figure's caption (with its provenance and error band) appears once in report.md and once in the HTML."""
    report = _report(report_dir)
    md = (report_dir / "report.md").read_text()
    page = (report_dir / "report.html").read_text()
    for f in report["figures"]:
        assert "provenance" in f["caption"] and "error band" in f["caption"]
        assert md.count(f["caption"]) == 1
        assert page.count(html.escape(f["caption"])) == 1


def test_plots_tell_devices_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pareto plot gives each device its own legend entry and marker; the roofline plot names kernel families in
    a legend rather than in labels that overlap; no PNG carries the caption as text."""
    import emulator.sizing.plots as plots

    figures: dict[str, Any] = {}

    def keep(plt: Any, fig: Any, folder: Path, name: str, caption: str) -> dict[str, str]:
        figures[name] = fig
        return {"file": name, "title": name, "caption": caption}

    monkeypatch.setattr(plots, "_save", keep)
    path = tmp_path / "train.yaml"
    path.write_text(SIZING.replace("deadline_days: 2", "deadline_days: 60").replace(
        "{device: b200, system: hgx-b200},\n             ", ""))
    sz = load_sizing(path)
    result = size(sz)
    from emulator.sizing.report import build_report

    plots.draw_all(result, sz, build_report(result, sz), tmp_path)
    cost_ax = figures["pareto.png"].axes[0]
    labels = [t.get_text() for t in cost_ax.get_legend().get_texts()]
    assert any(t.startswith("h100-sxm") for t in labels) and any(t.startswith("gb200") for t in labels)
    markers = {h.get_paths()[0].vertices.tobytes() for h in cost_ax.collections if h.get_label().endswith("front)")}
    assert len(markers) == 2
    roof = figures["roofline.png"].axes[0]
    assert not roof.texts and len(roof.get_legend().get_texts()) >= 3
    assert all(not fig.texts for fig in figures.values())


def test_the_recommendation_states_its_stacks_validated_errors(report_dir: Path) -> None:
    """report.json holds, per candidate device, the framework's end-to-end errors on that device's family, and the
    recommendation repeats its own device's beside the kernel-level error band, its model class's first."""
    report = json.loads((report_dir / "report.json").read_text())
    families = {d: v["device_family"] for d, v in report["validated"].items()}
    assert families == {"h100-sxm": "hopper", "b200": "blackwell", "gb200": "blackwell"}
    assert all(v["records"] and v["records"][0]["stack"] == "megatron-core" for v in report["validated"].values())
    rec = report["recommended"]["device"]
    summary = next(line for line in (report_dir / "report.md").read_text().splitlines() if "Recommended" in line)
    assert all(v["model_class"] == "dense" for v in report["validated"].values())  # Llama 3 70B: its class's errors
    assert f"Validated on {families[rec]} devices, training throughput of dense models: median |error|" in summary
    assert "all models: median |error|" in summary


def test_serving_report_puts_custom_accelerator_beside_gpu(tmp_path: Path) -> None:
    """A serving sizing evaluates the custom accelerator and a GPU and writes the latency-throughput plot."""
    path = tmp_path / "serve.yaml"
    path.write_text(SERVE)
    sz = load_sizing(path)
    res = size(sz)
    assert {r["device"] for r in res.rows} == {"mtia-v2", "h100-sxm"}
    report = write_report(res, sz, tmp_path / "out")
    assert (tmp_path / "out" / "latency_throughput.png").is_file()
    assert report["recommended"]["cost_per_million_queries_usd"] > 0
    # An LLM row's latency_p99_s is its p99 time to first token: the report says so, never "p99 latency".
    md = (tmp_path / "out" / "report.md").read_text()
    assert "p99 TTFT" in md and "p99 latency" not in md
    # The LLM's engine has records on Hopper, none on the custom accelerator's family: it says so.
    assert report["validated"]["h100-sxm"]["records"]
    assert report["validated"]["mtia-v2"] == {} or report["validated"]["mtia-v2"]["records"] == []


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    """Headless Chromium renders the report without console errors and with every image decoded."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); the HTML is checked statically above")
    page = (report_dir / "report.html").resolve()
    # Add a probe that marks each image loaded with a decoded width, so --dump-dom shows that they rendered.
    probe = page.parent / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<script>window.addEventListener('load',()=>{for(const i of "
                                              "document.images){i.setAttribute('data-w',String(i.naturalWidth));}"
                                              "document.body.setAttribute('data-done','1');});</script></body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"chromium could not run here: {e}")
    if out.returncode != 0 and not out.stdout:
        pytest.skip(f"chromium could not start here (exit {out.returncode}): {out.stderr[-300:]}")
    errors = [line for line in out.stderr.splitlines()
              if ("CONSOLE" in line and ("ERROR" in line or "error" in line.lower())) or "Uncaught" in line]
    assert not errors, errors
    widths = re.findall(r'data-w="(\d+)"', out.stdout)
    assert len(widths) == 4 and all(int(w) > 0 for w in widths), widths
