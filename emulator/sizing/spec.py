"""Sizing files: a target (train tokens by a date, or serve traffic within SLOs) and the hardware to choose from.

```yaml
goal: train                      # train | serve
model: llama3-70b                # preset | config.json path | inline mapping (as in scenario files)
train:                           # goal: train
  total_tokens: 15e12
  deadline_days: 90              # or max_devices: 8192 (a device budget: the fastest plan within it)
  seq_len: 8192
  global_batch_tokens: 16777216  # or global_batch_size (sequences)
  precision: bf16
  framework: megatron-core       # training stack (stack_profiles/training; the default)
  framework_settings: {defaults.ep_overlap: true}   # optional: the run's own values of the stack's items
serve:                           # goal: serve
  traffic: {arrival_rate_per_s: 50, input_tokens: 1024, output_tokens: 256}   # + shared_prefix_tokens
  slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.1}       # recommenders: {latency_p99_s: 0.01}
  precision: bf16
  engine: trtllm                 # serving stack (stack_profiles/serving; the default)
  speculative: {draft_tokens: 3, acceptance_rate: 0.85}   # optional, as in scenario files (also engine_settings)
candidates:                      # a device name, or {device, system, precision}
  - {device: h100-sxm, system: hgx-h100, precision: fp8}   # precision: this candidate's own (default: the target's)
  - mtia-v2                      # the first shipped system holding it, at the target's precision
constraints: {max_devices: 16384, power_cap_mw: 30, budget_usd: 5.0e8}
objective: cost                  # cost | energy | devices | time
pricing: capex                   # capex (amortised over the site's years, plus energy) | rental
site: default
search: {tp: [1, 2, 4, 8], pp: [1, 2, 4, 8], microbatch_size: [1, 2], recompute: [none, full], zero: [1]}
```
The file is read by the strict file layer (YAML 1.2 numbers such as `15e12`, duplicate keys refused) and every
key is checked through `emulator.fields.Fields`; errors name the file, the field and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from emulator.errors import EmulatorError
from emulator.fields import Fields
from emulator.files import read_yaml
from emulator.hardware import (
    DeviceProfile,
    Site,
    SystemProfile,
    list_devices,
    list_systems,
    load_device,
    load_site,
    load_system,
)
from emulator.precision import LOW_PRECISIONS, SERVE_PRECISIONS, TRAIN_PRECISIONS
from emulator.scenario import (
    RECOMPUTE,
    ServingSpec,
    global_batch_sequences,
    parse_inference,
)
from emulator.scenario.inference import MAX_DEVICES, MAX_RATE_PER_S
from emulator.scenario.load import MAX_TOTAL_TOKENS, check_seq_len
from emulator.scenario.plausibility import slo_warnings
from emulator.stacks import list_stacks, parse_settings
from emulator.workloads.config import DLRMConfig, ModelConfig, TransformerConfig
from emulator.workloads.load import load_model

GOALS = ("train", "serve")
OBJECTIVES = ("cost", "energy", "devices", "time")
PRICING = ("capex", "rental")
SEARCH_KEYS = ("tp", "pp", "microbatch_size", "recompute", "zero", "counts")
SCHEMA_HINT = "see the README's 'Sizing reports' section"
MAX_DEADLINE_DAYS = 36525.0  # a century: the report's time axis is logarithmic, and 1e300 days overflows it


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One hardware option: a device inside a system (node or rack) that sets its network, power and price, and
    the precision it runs (None: the target's `precision`), so that an fp8 GPU and an int8 accelerator are each
    sized in their own format in one search."""

    device: DeviceProfile
    system: SystemProfile
    precision: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraints:
    max_devices: int | None = None
    power_cap_mw: float | None = None
    budget_usd: float | None = None  # train: the whole run; serve: one year of service


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainTarget:
    total_tokens: float
    deadline_days: float | None
    max_devices: int | None
    seq_len: int
    global_batch_size: int  # sequences
    precision: str = "bf16"
    framework: str | None = None  # a training stack of stack_profiles/ (None: stacks.DEFAULT_STACK)
    framework_settings: tuple[tuple[str, Any], ...] = ()  # (stack item, value): the run's, over the framework's


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeTarget:
    arrival_rate_per_s: float
    spec: ServingSpec  # input/output lengths, SLO and precision for one replica's simulation


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    """What the training search enumerates (empty tuples: the defaults of `emulator.sizing.search`)."""

    tp: tuple[int, ...] = ()
    pp: tuple[int, ...] = ()
    microbatch_size: tuple[int, ...] = (1, 2)
    recompute: tuple[str, ...] = RECOMPUTE
    zero: tuple[int, ...] = (0, 1, 2)
    counts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizing:
    path: str  # as given (relative paths stay relative, so reports do not depend on the working directory)
    goal: str
    model: ModelConfig
    model_name: str
    candidates: tuple[Candidate, ...]
    constraints: Constraints
    objective: str
    pricing: str
    site: Site
    train: TrainTarget | None = None
    serve: ServeTarget | None = None
    search: SearchSpace = field(default_factory=SearchSpace)
    warnings: tuple[str, ...] = ()  # plausibility (`emulator.scenario.plausibility`): printed, never fatal


def _candidates(data: Any, path: str, goal: str) -> tuple[Candidate, ...]:
    """`candidates:`, each a device name or {device, system, precision}; a low precision is checked against the
    device's matrix formats here, so that a wrong pairing is an error naming the candidate, not a failed search."""
    if not isinstance(data, list) or not data:
        raise EmulatorError("must be a non-empty list of devices or {device, system, precision}. Fix: write e.g. "
                            "'candidates: [{device: h100-sxm, system: hgx-h100}, {device: mtia-v2, precision: int8}]'.",
                            file=path, field="candidates")
    out: list[Candidate] = []
    for i, item in enumerate(data):
        where = f"candidates[{i}]"
        r = Fields({"device": item} if isinstance(item, str) else item, file=path, prefix=where,
                   allowed=("device", "system", "precision"))
        name = r.text("device", hint=f"device: h100-sxm (one of {', '.join(list_devices())})")
        try:
            device = load_device(name)
        except EmulatorError as e:
            raise EmulatorError(str(e), file=path, field=f"{where}.device") from None
        system = _system(r, device, path, where)
        precision = None
        if r.has("precision"):
            goal_choices = TRAIN_PRECISIONS if goal == "train" else SERVE_PRECISIONS
            precision = r.choice("precision", goal_choices)
            # What the fix may name: this goal's formats that the chip's matrix units run (16/32-bit always run).
            runs = [p for p in goal_choices if p not in LOW_PRECISIONS or p in device.matrix_flops_per_s]
            if precision not in runs:
                raise r.error("precision", f"'{precision}' is not supported by {device.name} (its matrix units lack "
                                           f"it). Fix: use one of {', '.join(runs)} for {goal}, or a device with "
                                           f"{precision}.")
        if any(c.device.name == device.name and c.system.name == system.name and c.precision == precision
               for c in out):
            raise EmulatorError(f"{device.name} in {system.name}{f' at {precision}' if precision else ''} is listed "
                                "twice. Fix: delete the repeat (or give each a different precision).", file=path,
                                field=where)
        # The system's device: its power limit, if any, applies.
        out.append(Candidate(device=system.device, system=system, precision=precision))
    return tuple(out)


def _system(r: Fields, device: DeviceProfile, path: str, where: str) -> SystemProfile:
    """The candidate's system: as named (it must hold the device), else the first shipped one that holds it."""
    if r.has("system"):
        system_name = r.text("system", hint="system: hgx-h100 (`emulator profiles list`)")
        try:
            system = load_system(system_name)
        except EmulatorError as e:
            raise EmulatorError(str(e), file=path, field=f"{where}.system") from None
    else:
        found = [s for s in list_systems() if load_system(s).device.name == device.name]
        if not found:
            raise EmulatorError(f"no shipped system holds '{device.name}'. Fix: name a system profile built "
                                "from it (hw_profiles/systems).", file=path, field=f"{where}.system")
        system = load_system(found[0])
    if system.device.name != device.name:
        raise EmulatorError(f"system '{system.name}' holds '{system.device.name}' devices, not '{device.name}'. "
                            f"Fix: set device: {system.device.name}, or pick a system built from {device.name}.",
                            file=path, field=f"{where}.system")
    return system


def precision_of(sz: Sizing, cand: Candidate) -> str:
    """The precision a candidate is sized at: its own, else the target's."""
    if cand.precision is not None:
        return cand.precision
    if sz.train is not None:
        return sz.train.precision
    assert sz.serve is not None
    return sz.serve.spec.precision


def _max_devices(r: Fields) -> int:
    return r.integer("max_devices", maximum=MAX_DEVICES, why="more than any cluster")


def _constraints(data: Any, path: str) -> Constraints:
    r = Fields(data if data is not None else {}, file=path, prefix="constraints",
               allowed=("max_devices", "power_cap_mw", "budget_usd"))
    return Constraints(max_devices=_max_devices(r) if r.has("max_devices") else None,
                       power_cap_mw=r.number("power_cap_mw"), budget_usd=r.number("budget_usd"))


def _train(data: Any, path: str, model: ModelConfig) -> TrainTarget:
    r = Fields(data, file=path, prefix="train", allowed=("total_tokens", "deadline_days", "max_devices", "seq_len",
                                                         "global_batch_size", "global_batch_tokens", "precision",
                                                         "framework", "framework_settings"))
    if not isinstance(model, TransformerConfig):
        raise EmulatorError(f"{model.name} is not a transformer; training sizing plans transformers. Fix: use "
                            "goal: serve, or a transformer model.", file=path, field="goal")
    total = r.number("total_tokens", maximum=MAX_TOTAL_TOKENS, why="more than any corpus")
    if total is None:
        raise r.error("total_tokens", "is missing. Fix: add e.g. total_tokens: 15e12.")
    if r.has("deadline_days") == r.has("max_devices"):
        raise EmulatorError("needs exactly one of deadline_days (finish by a date) or max_devices (a device "
                            "budget). Fix: keep one; a cap beside a deadline goes in constraints.max_devices.",
                            file=path, field="train.deadline_days")
    seq = r.integer("seq_len", hint="seq_len: 8192")
    check_seq_len(model, seq, path, "train.seq_len")
    batch = global_batch_sequences(r, seq, required=True)
    return TrainTarget(total_tokens=total, deadline_days=r.number("deadline_days", maximum=MAX_DEADLINE_DAYS,
                                                                  why="a century"),
                       max_devices=_max_devices(r) if r.has("max_devices") else None, seq_len=seq,
                       global_batch_size=batch, precision=r.choice("precision", TRAIN_PRECISIONS, "bf16"),
                       framework=r.choice("framework", list_stacks("training")) if r.has("framework") else None,
                       framework_settings=(parse_settings(r.get("framework_settings"), "training", path,
                                                          "train.framework_settings")
                                           if r.has("framework_settings") else ()))


def _serve(data: Any, path: str, model: ModelConfig) -> ServeTarget:
    r = Fields(data, file=path, prefix="serve", allowed=("traffic", "slo", "precision", "kv_precision", "seed",
                                                         "num_requests", "engine", "engine_settings", "speculative"))
    r.required("traffic", "traffic: {arrival_rate_per_s: 50, input_tokens: 1024, output_tokens: 256}")
    t = r.section("traffic", ("arrival_rate_per_s", "input_tokens", "output_tokens", "shared_prefix_tokens"))
    rate = t.number("arrival_rate_per_s", maximum=MAX_RATE_PER_S, why="requests per second past any service")
    if rate is None:
        raise t.error("arrival_rate_per_s", "is missing. Fix: add the requests (queries) per second to serve, e.g. 50.")
    slo = r.required("slo", "slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.1} (recommenders: {latency_p99_s: 0.01})")
    dlrm = isinstance(model, DLRMConfig)
    inference: dict[str, Any] = {"scenario": "server", "slo": slo,
                                 "input_tokens": t.get("input_tokens", 1 if dlrm else None),
                                 "output_tokens": t.get("output_tokens", 1 if dlrm else None)}
    if t.has("shared_prefix_tokens"):
        inference["shared_prefix_tokens"] = t.get("shared_prefix_tokens")
    for key in ("precision", "kv_precision", "seed", "num_requests", "engine", "engine_settings", "speculative"):
        if r.has(key):
            inference[key] = r.get(key)
    for key in ("input_tokens", "output_tokens"):
        if inference[key] is None:
            raise t.error(key, "is missing. Fix: add the tokens per request, e.g. 1024.")
    try:
        spec = parse_inference(inference, path, prefix="serve")  # its errors name the serve.* fields
    except EmulatorError as e:  # the lengths were read from serve.traffic
        field = e.field or ""
        if not field.startswith(("serve.input_tokens", "serve.output_tokens", "serve.shared_prefix_tokens")):
            raise
        raise EmulatorError(e.message, file=path, field="serve.traffic." + field.removeprefix("serve.")) from None
    if dlrm and spec.slo.latency_p99_s is None:
        raise EmulatorError("a recommender's SLO is a p99 query latency. Fix: slo: {latency_p99_s: 0.01}.", file=path,
                            field="serve.slo")
    if not dlrm and spec.slo.ttft_p99_s is None and spec.slo.tpot_p99_s is None:
        raise EmulatorError("an LLM's SLO bounds p99 TTFT and/or TPOT. Fix: slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.1}.",
                            file=path, field="serve.slo")
    return ServeTarget(arrival_rate_per_s=rate, spec=spec)


def _ints(r: Fields, key: str, minimum: int = 1) -> tuple[int, ...]:
    value = r.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum
                                                       or v > MAX_DEVICES for v in value):
        raise r.error(key, f"is {value!r}; it must be a list of whole numbers from {minimum} to {MAX_DEVICES:,}. "
                           "Fix: e.g. [1, 2, 4].")
    return tuple(sorted(set(value)))


def _search(data: Any, path: str) -> SearchSpace:
    r = Fields(data if data is not None else {}, file=path, prefix="search", allowed=SEARCH_KEYS)
    kw: dict[str, Any] = {k: _ints(r, k, 0 if k == "zero" else 1) for k in ("tp", "pp", "microbatch_size", "zero",
                                                                              "counts")}
    if any(z > 3 for z in kw["zero"]):
        raise EmulatorError(f"ZeRO stages are 0 to 3, got {list(kw['zero'])}. Fix: pick from [0, 1, 2, 3].",
                            file=path, field="search.zero")
    if r.has("recompute"):
        rec = r.get("recompute")
        if not isinstance(rec, list) or not rec or any(v not in RECOMPUTE for v in rec):
            raise EmulatorError(f"is {rec!r}. Fix: a list drawn from {', '.join(RECOMPUTE)}.", file=path,
                                field="search.recompute")
        kw["recompute"] = tuple(v for v in RECOMPUTE if v in rec)
    return SearchSpace(**{k: v for k, v in kw.items() if v != ()})


def load_sizing(path: str | os.PathLike[str]) -> Sizing:
    """Read and validate a sizing file; every error names the file, the field and the fix."""
    path = str(path)
    r = Fields(read_yaml(path), file=path, allowed=("goal", "model", "train", "serve", "candidates", "constraints",
                                                    "objective", "pricing", "site", "search", "name", "description"))
    goal = r.choice("goal", GOALS, str(r.required("goal", "goal: train (or serve)")))
    spec = r.required("model", "model: llama3-70b")
    try:
        model = load_model(spec, origin=path)
    except EmulatorError as e:
        if e.file:
            raise
        raise EmulatorError(str(e), file=path, field=e.field or "model") from None
    other = "serve" if goal == "train" else "train"
    if r.has(other):
        raise EmulatorError(f"goal is {goal}, but the file has a '{other}:' section. Fix: set goal: {other}, or "
                            f"delete the '{other}:' section.", file=path, field=other)
    section = r.required(goal, f"{goal}: {{...}} ({SCHEMA_HINT})")
    train = _train(section, path, model) if goal == "train" else None
    serve = _serve(section, path, model) if goal == "serve" else None
    constraints = _constraints(r.get("constraints"), path)
    if train and train.max_devices and constraints.max_devices and train.max_devices != constraints.max_devices:
        raise EmulatorError(f"train.max_devices is {train.max_devices} but constraints.max_devices is "
                            f"{constraints.max_devices}: the two caps contradict each other. Fix: give the device "
                            "budget once.", file=path, field="constraints.max_devices")
    objective = r.choice("objective", OBJECTIVES, "time" if train and train.max_devices else "cost")
    if train and train.max_devices and objective == "devices":
        raise EmulatorError("objective 'devices' minimises the device count, but train.max_devices fixes a device "
                            "budget without a deadline, so every plan could shrink to one device. Fix: give "
                            "deadline_days instead, or pick objective time, cost or energy.", file=path,
                            field="objective")
    site_name = r.text("site", "default", hint="site: default")
    try:
        site = load_site(site_name)
    except EmulatorError as e:
        raise EmulatorError(str(e), file=path, field="site") from None
    return Sizing(path=path, goal=goal, model=model, model_name=spec if isinstance(spec, str) else model.name,
                  candidates=_candidates(r.required("candidates", "candidates: [{device: h100-sxm, system: hgx-h100}]"),
                                         path, goal),
                  constraints=constraints, objective=objective, pricing=r.choice("pricing", PRICING, "capex"),
                  site=site, train=train, serve=serve, search=_search(r.get("search"), path),
                  warnings=tuple(slo_warnings(serve.spec.slo, "serve") if serve else ()))


__all__ = ["Candidate", "Constraints", "SearchSpace", "ServeTarget", "Sizing", "TrainTarget", "load_sizing",
           "precision_of"]
