"""NVIDIA AIConfigurator's own predictions of the AIConfigurator rows `validate --published` samples, the reference
the serving predictions are compared with (emulator/validation/aic_reference.py).

Run with AIConfigurator installed in a venv of its own (it is not a dependency of this project), on a saved
`emulator validate --published --json` run whose sampled rows it predicts:

    python -m venv /tmp/aicenv && /tmp/aicenv/bin/pip install aiconfigurator==0.12.0
    .venv/bin/emulator validate --published --json > /tmp/validate.json
    /tmp/aicenv/bin/python scripts/aic_reference.py /tmp/validate.json [out.csv]

Each row goes to AIConfigurator's `cli_estimate` (aiconfigurator.cli.api) as its own accuracy tooling sends a row
(tools/accuracy_regression_testing/predict_silicon_sample.py: model, system, backend, lengths, quantisation, batch and
layout), with the backend version left to AIConfigurator's default database (`backend_version=None`: the row's own
version is rarely in the installed database). Model ids the package ships no config for are mapped to the one it
ships for the same weights (`ALIASES`); a row AIConfigurator refuses keeps its reason. Writes
emulator/data/aic_reference_predictions.csv (id, the model id used, TTFT and TPOT in ms, the version, the status).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from pathlib import Path

import aiconfigurator_core  # type: ignore[import-not-found]
from aiconfigurator import __version__ as AIC_VERSION  # type: ignore[import-not-found]
from aiconfigurator.cli.api import cli_estimate  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "emulator" / "data"
CSVS = (DATA / "aic_silicon_hopper.csv", DATA / "aic_silicon_blackwell.csv")
OUT = DATA / "aic_reference_predictions.csv"
SOURCES = ("AIConfigurator Hopper sample", "AIConfigurator Blackwell (held out)",
           "AIConfigurator unseen models (held out)", "AIConfigurator unseen models, Blackwell (held out)")
ALIASES = {"meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Meta-Llama-3.1-8B",
           "meta-llama/Llama-3.1-70B": "meta-llama/Meta-Llama-3.1-70B",
           "nvidia/Llama-3.1-8B-Instruct-FP8": "meta-llama/Meta-Llama-3.1-8B"}
LAYOUT = ("batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")


def estimate(row: dict[str, str]) -> tuple[str, float | None, float | None, str]:
    model = ALIASES.get(row["model_path"], row["model_path"])
    args = dict(model_path=model, system_name=row["system"], mode="agg", backend_name=row["backend"],
                backend_version=None, isl=int(row["isl"]), osl=int(row["osl"]),
                gemm_quant_mode=row["gemm_quant_mode"] or None, moe_quant_mode=row["moe_quant_mode"] or None,
                **{f: int(row[f]) for f in LAYOUT if row.get(f)})
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = cli_estimate(**args)
        return model, float(result.ttft), float(result.tpot), "ok"
    except Exception as e:  # noqa: BLE001 - a refused row keeps AIConfigurator's reason
        # The reason without this machine's install path, which the package's messages carry.
        reason = f"{type(e).__name__}: {e}".replace(str(Path(aiconfigurator_core.__file__).parent.parent) + "/", "")
        return model, None, None, " ".join(reason.split())[:300]


def main(argv: list[str]) -> int:
    validate, out_path = json.loads(Path(argv[0]).read_text()), Path(argv[1]) if len(argv) > 1 else OUT
    wanted = {c["id"].rsplit(":", 1)[0] for c in validate["all_cases"] if c["source"] in SOURCES}
    rows = {r["id"]: r for path in CSVS for r in csv.DictReader(path.open(newline=""))}
    with out_path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "aic_model_path", "aic_ttft_ms", "aic_tpot_ms", "aiconfigurator_version", "status"])
        for i, row_id in enumerate(sorted(wanted)):
            model, ttft, tpot, status = estimate(rows[row_id])
            out.writerow([row_id, model, "" if ttft is None else f"{ttft:.4f}", "" if tpot is None else f"{tpot:.5f}",
                          AIC_VERSION, status])
            print(f"[{i + 1}/{len(wanted)}] {row_id}: {status if ttft is None else f'{ttft:.1f} / {tpot:.2f} ms'}",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
