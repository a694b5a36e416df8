"""The report folder: files present, PNGs embedded, and the HTML rendering cleanly in headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from emulator.sizing import load_sizing, size, write_report

SIZING = """goal: train
model: llama3-8b
train: {total_tokens: 1e12, deadline_days: 60, seq_len: 4096, global_batch_size: 256}
candidates: [{device: h100-sxm, system: hgx-h100}, {device: gb200, system: gb200-nvl72}]
constraints: {max_devices: 512, power_cap_mw: 5}
search: {tp: [2, 8], pp: [1, 2], microbatch_size: [1], recompute: [none], zero: [1]}
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
