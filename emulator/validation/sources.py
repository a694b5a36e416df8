"""Every published comparison in one list, summarised per source and per software stack.

Each section of `validate --published` keeps its own cases and summary; this module gives the view across them
that the error is judged by: one record per case, `{id, metric, published, predicted, error, stack, source}`
(`id` exactly as in the reference file; `model`, the model preset, beside them where the section names one), and per
(source, stack) the median and maximum |error| and the signed mean error (a signed bias is a mechanism not modelled
yet).
"""

from __future__ import annotations

import functools
from typing import Any

from emulator.stacks.accuracy import MODEL_CLASSES, class_of
from emulator.stats import median
from emulator.workloads.presets import preset

CASE_KEYS = ("id", "metric", "published", "predicted", "error", "stack", "source")
# The sources of the sections that keep no label of their own (the others: each module's SOURCE)
A100_SOURCE = "Megatron-LM A100 papers (2021-22)"
MLPERF_H100_SOURCE = "MLPerf Inference v4.1 H100"
HOPPER_TRAINING_SOURCE = "NeMo/Megatron-Bridge H100 tables"
BLACKWELL_TRAINING_SOURCE = "Megatron-Bridge B200/GB200 (held out)"
AIC_HOPPER_SOURCE = "AIConfigurator Hopper sample"
AIC_BLACKWELL_SOURCE = "AIConfigurator Blackwell (held out)"
AIC_UNSEEN_SOURCE = "AIConfigurator unseen models (held out)"  # Kimi-K2.5, MiniMax-M2.5 on Hopper
AIC_UNSEEN_BLACKWELL_SOURCE = "AIConfigurator unseen models, Blackwell (held out)"
AIC_WEIGHT_ONLY_SOURCE = "AIConfigurator weight-only 4-bit, Hopper (held out)"  # gpt-oss MXFP4, Kimi-K2.5 INT4


def case_records(section: dict[str, Any], *, source: str, stack: str) -> list[dict[str, Any]]:
    """A section's cases as records, `source` and `stack` filled where the section leaves them out, and the
    case's `model` kept where it names one (what `accuracy_records` splits dense from MoE models by)."""
    out = []
    for c in section["cases"]:
        metric = c.get("metric") or c.get("unit", "")
        out.append({"id": c["id"], "metric": metric, "published": c["published"], "predicted": c["predicted"],
                    "error": c["error"], "stack": c.get("stack") or stack, "source": source}
                   | ({"model": c["model"]} if c.get("model") else {}))
    return out


def error_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Cases, median and max |error| and the signed mean error of some cases (None for none)."""
    errors = [c["error"] for c in cases]
    if not errors:
        return {"num_cases": 0, "median_abs_error": None, "max_abs_error": None, "mean_error": None}
    return {"num_cases": len(errors), "median_abs_error": median([abs(e) for e in errors]),
            "max_abs_error": max(abs(e) for e in errors), "mean_error": sum(errors) / len(errors)}


def brief(summary: dict[str, Any]) -> str:
    """An `error_summary` in a report's cell: median |error| (signed mean), '-' without cases."""
    return f"{summary['median_abs_error']:6.1%} ({summary['mean_error']:+6.1%})" if summary["num_cases"] else "-"


@functools.lru_cache(maxsize=64)
def model_class(model: str | None) -> str | None:
    """"moe" or "dense" for a model preset's name (a case's `model`), None for no name. Cached: a run asks it for
    each of its thousands of cases, and a preset is built anew each time it is named."""
    return class_of(preset(model).is_moe if model else None)


def by_source(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (source, stack, metric): `error_summary` of its cases, and of its dense and MoE models' cases apart
    (`by_model_class`, where the cases name their model)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["source"], r["stack"], r["metric"]), []).append(r)
    out = []
    for (s, k, m), cases in sorted(groups.items()):
        classes: dict[str, list[dict[str, Any]]] = {}
        for c in cases:
            whose = model_class(c.get("model"))
            if whose is not None:
                classes.setdefault(whose, []).append(c)
        out.append({"source": s, "stack": k, "metric": m, **error_summary(cases),
                    "by_model_class": {w: error_summary(classes[w]) for w in MODEL_CLASSES if w in classes}})
    return out


def render(rows: list[dict[str, Any]]) -> str:
    # The source column as wide as the longest name, so that "... unseen models (held out)" and "..., Blackwell
    # (held out)" stay apart
    w = max([len(r["source"]) for r in rows] + [6])
    lines = ["Summary per source and stack (error = predicted / published - 1; dense / MoE: the median |error| of "
             "each model class's cases)",
             f"{'source':{w}s} {'stack':14s} {'metric':24s} {'cases':>5s} {'median|e|':>9s} {'max|e|':>8s} "
             f"{'mean e':>8s} {'dense / MoE':>15s}"]
    for r in rows:
        split = " / ".join(f"{c['median_abs_error']:.1%}" if c else "-"
                           for c in (r["by_model_class"].get("dense"), r["by_model_class"].get("moe")))
        lines.append(f"{r['source']:{w}s} {r['stack']:14s} {r['metric'][:24]:24s} {r['num_cases']:5d} "
                     f"{r['median_abs_error']:9.1%} {r['max_abs_error']:8.1%} {r['mean_error']:+8.1%} "
                     f"{split if r['by_model_class'] else '':>15s}")
    return "\n".join(lines)


__all__ = ["CASE_KEYS", "brief", "by_source", "case_records", "error_summary", "model_class", "render"]
