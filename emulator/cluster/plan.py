"""Parallel plans: one training layout (tp, pp, dp, cp, ep, ZeRO/FSDP, recompute, micro-batches), validated.

Rank order (Megatron-LM's): tensor parallel varies fastest, then context, then data, then pipeline. So a tp group
is consecutive ranks (inside one node when tp divides it), a dp group has stride tp*cp, and pipeline neighbours are
tp*cp*dp ranks apart. Expert layers fold the same tp*cp*dp ranks of a stage into their own layout (Megatron-Core's
MoE parallel folding): expert tensor parallel `etp` fastest, then expert parallel `ep`, then expert data parallel
edp = tp*cp*dp / (ep*etp); `etp` defaults to 1, as Megatron-Core's `--expert-tensor-parallel-size`.

`check_plan` raises one `EmulatorError` naming the field and a fix; `plan_warnings` returns advice that does
not stop a prediction (uneven pipeline stages, for instance).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from emulator.errors import EmulatorError
from emulator.scenario import Parallel, Scenario
from emulator.stacks import StackProfile
from emulator.workloads.config import ModelConfig, TransformerConfig

SCHEDULES = ("1f1b", "interleaved")


END_CHUNKS = 2  # pipeline chunks the embedding and the loss may take in place of layers (check_plan)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan(Parallel):
    """One training layout: the scenario's `Parallel` sizes (tp * pp * dp * cp devices) with the recompute
    policy and the batch it runs."""

    sequence_parallel: bool = False  # resolved: the scenario's choice or the stack's default (`plan_from`)
    zero: int = 0
    recompute: str = "none"  # none | selective | full
    global_batch_size: int = 1  # sequences per step
    seq_len: int = 1

    @property
    def edp(self) -> int:
        """Expert data parallel size: the ranks holding the same experts (tp*cp*dp / (ep*etp))."""
        return max(self.tp * self.cp * self.dp // (self.ep * self.etp), 1)

    @property
    def shard_stage(self) -> int:
        """The ZeRO stage in effect (FSDP shards weights, gradients and optimizer states, like ZeRO-3)."""
        return 3 if self.fsdp else self.zero

    @property
    def num_microbatches(self) -> int:
        """Micro-batches each data-parallel replica runs per step (gradient accumulation steps)."""
        return self.global_batch_size // (self.dp * self.microbatch_size)

    @property
    def schedule(self) -> str:
        return "interleaved" if self.virtual_stages > 1 else "1f1b"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {
            "num_devices": self.num_devices, "num_microbatches": self.num_microbatches, "schedule": self.schedule,
            "edp": self.edp}


# What a stack's `recompute: selective` reruns (`recompute.selective`): a named policy or Megatron-Core's recompute
# modules (`cluster.recompute`)
Policy = str | tuple[str, ...]


def recomputed_modules(recompute: str, policy: Policy) -> tuple[str, ...]:
    """The Megatron-Core modules a plan's `recompute` reruns under a stack's selective policy (`recompute.selective`,
    `cluster.recompute`): the policy's module list under `selective`; none under a named policy, `none` or `full`."""
    return policy if recompute == "selective" and isinstance(policy, tuple) else ()


def plan_from(s: Scenario, stack: StackProfile | None = None) -> Plan:
    """The plan a training scenario asks for (its parallel section, recompute and batch); what the section
    leaves out, the software stack's defaults fill in (sequence parallelism with tp, the distributed
    optimizer's ZeRO stage over data-parallel ranks)."""
    if s.training is None:
        raise EmulatorError("the cluster training model needs a 'training:' section. Fix: add one.", file=s.path,
                            field="training")
    p, t = s.training.parallel, s.training
    sequence_parallel = p.sequence_parallel
    if sequence_parallel is None:
        sequence_parallel = bool(stack and stack.get("defaults.sequence_parallel")) and p.tp > 1
    zero = p.zero
    if zero is None:
        zero = int(stack.get("defaults.zero")) if stack and p.dp * p.cp > 1 and not p.fsdp else 0
    return Plan(tp=p.tp, pp=p.pp, dp=p.dp, cp=p.cp, ep=p.ep, virtual_stages=p.virtual_stages,
                microbatch_size=p.microbatch_size, sequence_parallel=sequence_parallel, zero=zero, fsdp=p.fsdp,
                recompute=t.recompute, global_batch_size=t.global_batch_size, seq_len=t.seq_len, etp=p.etp)


def _fail(message: str, field: str, path: str | None) -> EmulatorError:
    return EmulatorError(message, file=path, field=f"training.parallel.{field}" if field else "hardware.num_devices")


def _divisors_near(n: int, target: int) -> str:
    options = [d for d in range(1, n + 1) if n % d == 0]
    near = sorted(options, key=lambda d: abs(d - target))[:3]
    return ", ".join(str(d) for d in sorted(near))


def _device_count_fixes(model: TransformerConfig, plan: Plan, num_devices: int) -> list[str]:
    """Changes that reconcile the plan with the device count, each one checked by `check_plan` itself (a dp that
    does not divide the global batch, or the device count it implies, is never suggested): the dp that uses every
    device, the whole multiples of tp*pp*cp just below and above, the plan's own count."""
    others = plan.tp * plan.pp * plan.cp
    low, high = num_devices // others, -(-num_devices // others)
    options = [] if num_devices % others else [(f"set training.parallel.dp: {low} to use all {num_devices} devices",
                                                low, num_devices)]
    options += [(f"set hardware.num_devices: {dp * others} (dp {dp})", dp, dp * others)
                for dp in sorted({low, high}) if dp >= 1 and dp * others != num_devices]
    options.append((f"set hardware.num_devices: {plan.num_devices} (the plan as written)", plan.dp,
                    plan.num_devices))
    fixes: list[str] = []
    for text, dp, devices in options:
        try:
            check_plan(model, dataclasses.replace(plan, dp=dp), devices)
        except EmulatorError:
            continue
        if text not in fixes:
            fixes.append(text)
    return fixes[:3]


def check_plan(model: ModelConfig, plan: Plan, num_devices: int, path: str | None = None) -> None:
    """Raise an `EmulatorError` with advice when the plan cannot run this model on these devices."""
    if not isinstance(model, TransformerConfig):
        if plan.num_devices != 1 or plan.ep != 1:
            raise _fail(f"{model.name} is not a transformer; the cluster model plans transformers only. Fix: use "
                        "one device (all sizes 1).", "tp", path)
        return
    if plan.num_devices != num_devices:
        fixes = _device_count_fixes(model, plan, num_devices)
        fix = (" or ".join(fixes) if fixes else f"change tp, pp or cp: no data-parallel size near "
               f"{num_devices} / (tp*pp*cp) passes this model's other checks")
        raise _fail(f"tp*pp*dp*cp = {plan.tp}*{plan.pp}*{plan.dp}*{plan.cp} = {plan.num_devices} but num_devices is "
                    f"{num_devices}. Fix: {fix}.", "", path)
    if model.num_heads % plan.tp:
        raise _fail(f"{model.num_heads} attention heads are not divisible by tp {plan.tp}. Fix: use a tp that "
                    f"divides the heads ({_divisors_near(model.num_heads, plan.tp)}).", "tp", path)
    kv = model.num_kv_heads
    if kv >= plan.tp and kv % plan.tp:
        raise _fail(f"{kv} key/value heads are not divisible by tp {plan.tp}. Fix: use a tp that divides them "
                    f"({_divisors_near(kv, plan.tp)}) or a tp above {kv} that is a multiple of it (KV heads are "
                    "then replicated).", "tp", path)
    if kv < plan.tp and plan.tp % kv:
        raise _fail(f"tp {plan.tp} is not a multiple of the {kv} key/value heads, so they cannot be replicated "
                    f"evenly. Fix: use tp {kv * (plan.tp // kv or 1)} or a divisor of {kv}.", "tp", path)
    if model.ffn_hidden_size % plan.tp:
        raise _fail(f"the feed-forward width {model.ffn_hidden_size} is not divisible by tp {plan.tp}. Fix: use a tp "
                    "that divides it.", "tp", path)
    chunks = plan.pp * plan.virtual_stages
    # Megatron-Core's account_for_embedding_in_pipeline_split / account_for_loss_in_pipeline_split let the
    # embedding and the loss each take a chunk's place (Llama 3.1 405B's 126 layers in 16 x 8 chunks)
    if model.num_layers + END_CHUNKS < chunks:
        raise _fail(f"{model.num_layers} layers cannot fill pp*virtual_stages = {chunks} model chunks, even with the "
                    f"embedding and the loss in a chunk each. Fix: use at most {model.num_layers + END_CHUNKS} "
                    "chunks.", "pp", path)
    if plan.virtual_stages > 1 and plan.pp == 1:
        raise _fail("virtual_stages > 1 interleaves pipeline stages and needs pp > 1. Fix: set virtual_stages: 1 "
                    "or pp > 1.", "virtual_stages", path)
    if model.is_moe and model.num_experts % plan.ep:
        raise _fail(f"{model.num_experts} experts are not divisible by ep {plan.ep}. Fix: use an ep that divides "
                    f"them ({_divisors_near(model.num_experts, plan.ep)}).", "ep", path)
    if plan.ep > 1 and not model.is_moe:
        raise _fail(f"ep {plan.ep} needs a mixture-of-experts model; {model.name} is dense. Fix: set ep: 1.", "ep",
                    path)
    if plan.etp > 1 and not model.is_moe:
        raise _fail(f"etp {plan.etp} needs a mixture-of-experts model; {model.name} is dense. Fix: set etp: 1.",
                    "etp", path)
    folded = plan.tp * plan.cp * plan.dp
    if folded % (plan.ep * plan.etp):
        raise _fail(f"ep*etp = {plan.ep}*{plan.etp} must divide tp*cp*dp = {folded} (Megatron-Core folds a stage's "
                    "tensor-, context- and data-parallel ranks into expert tensor x expert x expert data parallel). "
                    f"Fix: use an ep that divides {folded // plan.etp} ({_divisors_near(folded // plan.etp, plan.ep)})"
                    ", or change etp.", "ep", path)
    if model.is_moe and model.moe_ffn_hidden_size % plan.etp:
        raise _fail(f"the experts' feed-forward width {model.moe_ffn_hidden_size} is not divisible by etp "
                    f"{plan.etp}. Fix: use an etp that divides it.", "etp", path)
    if plan.seq_len % (2 * plan.cp if plan.cp > 1 else 1):
        raise _fail(f"seq_len {plan.seq_len} is not divisible by 2*cp = {2 * plan.cp} (ring attention splits each "
                    "sequence into 2*cp load-balanced chunks). Fix: change cp or seq_len.", "cp", path)
    if plan.sequence_parallel and plan.seq_len // plan.cp % plan.tp:
        raise _fail(f"sequence parallelism splits the {plan.seq_len // plan.cp} tokens of a rank over tp {plan.tp}, "
                    "which does not divide them. Fix: change tp or seq_len, or turn sequence_parallel off.",
                    "sequence_parallel", path)
    if plan.global_batch_size % (plan.dp * plan.microbatch_size):
        good = plan.dp * plan.microbatch_size
        raise _fail(f"global_batch_size {plan.global_batch_size} is not a multiple of dp*microbatch_size = {good}. "
                    f"Fix: use a global batch of {max(good, plan.global_batch_size // good * good)} sequences or "
                    "change dp or microbatch_size.", "microbatch_size", path)
    if plan.virtual_stages > 1 and plan.num_microbatches % plan.pp:
        raise _fail(f"the interleaved schedule needs the {plan.num_microbatches} micro-batches to be a multiple of "
                    f"pp {plan.pp}. Fix: change global_batch_size or microbatch_size, or set virtual_stages: 1.",
                    "virtual_stages", path)
    if plan.fsdp and plan.zero not in (0, 3):
        raise _fail(f"fsdp shards like ZeRO-3, so zero: {plan.zero} contradicts it. Fix: drop zero or set it to 3.",
                    "zero", path)


def plan_warnings(model: ModelConfig, plan: Plan) -> list[str]:
    """Advice that does not stop a prediction."""
    out = []
    if isinstance(model, TransformerConfig):
        chunks = plan.pp * plan.virtual_stages
        if model.num_layers % chunks:
            per = math.ceil(model.num_layers / chunks)
            out.append(f"{model.num_layers} layers do not divide into pp*virtual_stages = {chunks} chunks: the "
                       f"slowest stage holds {per * plan.virtual_stages} layers and sets the pace (Llama 3 puts one "
                       "layer fewer on the first and last stages; a divisor of the layer count avoids the imbalance)")
        if model.num_kv_heads < plan.tp:
            out.append(f"{model.num_kv_heads} key/value heads over tp {plan.tp}: each KV head is replicated on "
                       f"{plan.tp // model.num_kv_heads} ranks")
    if plan.pp > 1 and plan.num_microbatches < plan.pp:
        out.append(f"{plan.num_microbatches} micro-batches for {plan.pp} pipeline stages: most of the step is "
                   "pipeline bubble; use more micro-batches (a larger global batch or a smaller microbatch_size)")
    return out
