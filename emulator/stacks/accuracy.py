"""How far a stack's end-to-end predictions were from published measurements, per device family and metric.

A prediction's provenance and error band (`Prediction.error_band`) speak for its kernels: how well the calibration
it rests on predicts microbenchmarks. Whole steps and served requests depend on more (scheduling, overlap, what the
engine's defaults do), so each prediction also reports the end-to-end record of its stack on its device family
(`Prediction.validated`): the median |error|, the signed mean (a bias the model does not explain yet) and the worst
case, over the published measurements `emulator validate --published` compares against, each as it was held out:
- the stacks fitted on a family (Megatron-Core, TensorRT-LLM, vLLM and SGLang on Hopper): the leave-one-model-out
  errors of the fit record (`stack_profiles/fits/<stack>-<family>.json`);
- every other family and stack: published runs nothing was fitted on (Blackwell, torchtitan, MLPerf on other chips).
`scripts/accuracy.py` gathers them into `stack_profiles/fits/validated.json` (`RECORDS`); rerun it after a refit or
a model change. A family without a record says so, with the records of the families that have one: those errors
transfer only as far as the model does.

Errors are predicted / measured - 1 of the metric itself, so their sign reads with it: TTFT -35% is a predicted
first-token time a third below the measured one; training throughput +8% is a predicted rate 8% above.

A record also splits its cases by model class (`by_model_class`: `dense` and `moe`, each with its own count, median,
signed mean and maximum), because mixture-of-experts models carry mechanisms dense ones do not (routing, grouped
GEMMs, token dispatch) and their errors differ: Megatron-Core's Hopper training throughput is 7.8% off for dense
models and 19% (signed +31%) for MoE ones. A prediction names its model's class and reports that class's figures
first, the record's all-model ones beside them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.errors import EmulatorError
from emulator.fields import Fields
from emulator.files import read_json, shipped

RECORDS = shipped("stack_profiles") / "fits" / "validated.json"
# The metrics the records cover (key -> what a report calls it) and the modes whose predictions show each.
METRICS = {"training_throughput": "training throughput", "training_step_time": "training step time", "ttft": "TTFT",
           "tpot": "TPOT", "serving_throughput": "serving throughput", "serving_step_time": "serving step time"}
SHOWN = {"training": ("training_throughput", "training_step_time"),
         "inference": ("ttft", "tpot", "serving_throughput", "serving_step_time")}
METHODS = ("leave one model out", "held out")
MODEL_CLASSES = {"dense": "dense models", "moe": "MoE models"}  # key -> what a report calls it
ERRORS = ("num_cases", "median_abs_error", "mean_error", "max_abs_error")
FIELDS = ("stack", "device_family", "metric", *ERRORS, "method", "source", "by_model_class")
FIX = "regenerate it with `python scripts/accuracy.py` (stack_profiles/README.md, 'Validated accuracy')"


def class_of(is_moe: bool | None) -> str | None:
    """The MODEL_CLASSES key of a transformer that routes to experts (True) or does not (False); None for a model of
    neither kind (not a transformer), whose predictions cite every model's figures."""
    return None if is_moe is None else "moe" if is_moe else "dense"


@dataclass(frozen=True, slots=True)
class Errors:
    """Some cases' errors: how many, the median |error|, the signed mean and the largest |error|."""

    num_cases: int
    median_abs_error: float
    mean_error: float
    max_abs_error: float

    def describe(self, metric: str, whose: str = "") -> str:
        """'TTFT: median |error| 48.7%, signed mean -35.5% (predicted below measured), max 95.1%' (`whose`: ' of MoE
        models' after the metric's name)."""
        side = "above" if self.mean_error > 0 else "below"
        return (f"{METRICS[metric]}{whose}: median |error| {self.median_abs_error:.1%}, signed mean "
                f"{self.mean_error:+.1%} (predicted {side} measured), max {self.max_abs_error:.1%}")


@dataclass(frozen=True, slots=True)
class Accuracy:
    """One stack's end-to-end error on one device family and metric (module docstring)."""

    stack: str
    device_family: str
    metric: str  # a METRICS key
    num_cases: int
    median_abs_error: float
    mean_error: float
    max_abs_error: float
    method: str  # "leave one model out" (a fit's cross-validation) or "held out" (never fitted on)
    source: str  # the published measurements
    # The same errors per model class (a MODEL_CLASSES key) among the cases whose model is known
    by_model_class: Mapping[str, Errors] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Accuracy:
        """The inverse of `as_dict` (a `validated` record back to its record)."""
        return cls(**{k: v for k, v in d.items() if k != "by_model_class"},
                   by_model_class={k: Errors(**v) for k, v in d.get("by_model_class", {}).items()})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"by_model_class": {k: asdict(v) for k, v in self.by_model_class.items()}}

    def describe(self, model_class: str | None = None) -> str:
        """'TTFT: median |error| 48.7%, signed mean -35.5% (predicted below measured), max 95.1%; 55 published cases
        (AIConfigurator Hopper sample; each predicted by the fit made without its model)'; for a `model_class` the
        record has cases of, that class's errors first: 'TTFT of MoE models: median |error| ...; 22 of 55 published
        cases (...); all models: median |error| 23.7%, signed mean -16.0%'."""
        how = ("each predicted by the fit made without its model" if self.method == "leave one model out" else
               "none of them used in any fit")
        mine = self.by_model_class.get(model_class or "")
        everything = Errors(self.num_cases, self.median_abs_error, self.mean_error, self.max_abs_error)
        if mine is None:
            return f"{everything.describe(self.metric)}; {self.num_cases} published cases ({self.source}; {how})"
        return (f"{mine.describe(self.metric, f' of {MODEL_CLASSES[str(model_class)]}')}; {mine.num_cases} of "
                f"{self.num_cases} published cases ({self.source}; {how}); all models: median |error| "
                f"{self.median_abs_error:.1%}, signed mean {self.mean_error:+.1%}")


def _errors(f: Fields) -> dict[str, Any]:
    """The four error fields of a record or of one of its model classes, checked."""
    out: dict[str, Any] = {}
    for name, low in (("median_abs_error", 0.0), ("max_abs_error", 0.0), ("mean_error", -1.0)):
        f.required(name, f"{name}: 0.1")
        out[name] = float(f.number(name, minimum=low, strict=False, maximum=1e6) or 0.0)
    if out["median_abs_error"] > out["max_abs_error"]:
        raise f.error("median_abs_error", f"is {out['median_abs_error']:g}, above max_abs_error "
                                          f"{out['max_abs_error']:g}. Fix: {FIX}.")
    out["num_cases"] = f.integer("num_cases", minimum=1)
    return out


def _record(item: Any, i: int, file: str) -> Accuracy:
    f = Fields(item, file=file, allowed=FIELDS, prefix=f"records[{i}]")
    hint = "see stack_profiles/README.md, 'Validated accuracy'"
    classes = f.section("by_model_class", MODEL_CLASSES)
    by_class = {name: Errors(**_errors(classes.section(name, ERRORS))) for name in classes.data}
    return Accuracy(stack=f.text("stack", hint=hint), device_family=f.text("device_family", hint=hint),
                    metric=f.choice("metric", METRICS), method=f.choice("method", METHODS),
                    source=f.text("source", hint=hint), by_model_class=by_class, **_errors(f))


@functools.lru_cache(maxsize=4)
def records(path: str = str(RECORDS)) -> tuple[Accuracy, ...]:
    """Every record of the file (the shipped one unless named), checked field by field."""
    f = Fields(read_json(path, fix=FIX), file=path, allowed=("about", "records"))
    items = f.required("records", "records: [...]")
    if not isinstance(items, list):
        raise f.error("records", f"must be a list of records. Fix: {FIX}.")
    out = tuple(_record(item, i, path) for i, item in enumerate(items))
    seen: set[tuple[str, str, str, str]] = set()
    for i, r in enumerate(out):
        key = (r.stack, r.device_family, r.metric, r.source)
        if key in seen:
            raise EmulatorError(f"repeats {r.stack} on {r.device_family}, {r.metric}, {r.source}. Fix: {FIX}.",
                                file=path, field=f"records[{i}]")
        seen.add(key)
    return out


def validated(stack: str, device_family: str, mode: str, model_class: str | None = None,
              path: str = str(RECORDS)) -> dict[str, Any]:
    """What a prediction of `mode` ("training" or "inference") by `stack` on a `device_family` device reports:
    the records of that family for the metrics the mode shows, and, where it has none, those of the other
    families (`other_families`); `model_class` (a MODEL_CLASSES key, None for a model of neither kind) says whose
    errors its sentences lead with. Empty for a stack without any record."""
    shown = SHOWN[mode]
    mine = sorted((r for r in records(path) if r.stack == stack and r.metric in shown),
                  key=lambda r: (shown.index(r.metric), r.device_family, r.source))
    if not mine:
        return {}
    own = [r for r in mine if r.device_family == device_family]
    return {"device_family": device_family, "model_class": model_class, "records": [r.as_dict() for r in own],
            "other_families": [] if own else [r.as_dict() for r in mine]}


def lines(validated: Mapping[str, Any]) -> list[str]:
    """The report's sentences for `validated`'s records (one per record; a family without records says so)."""
    if not validated:
        return []
    whose = validated.get("model_class")
    own = [Accuracy.from_dict(r).describe(whose) for r in validated["records"]]
    if own:
        return [f"on {validated['device_family']} devices, {text}" for text in own]
    others = [f"on {r['device_family']} devices, {Accuracy.from_dict(r).describe(whose)}"
              for r in validated["other_families"]]
    return [f"no published measurements on {validated['device_family']} devices; the errors hold there only as far "
            "as the model transfers"] + others


__all__ = ["METRICS", "MODEL_CLASSES", "RECORDS", "Accuracy", "Errors", "class_of", "lines", "records", "validated"]
