"""Pipeline schedules and communication overlap: which seconds of a step are compute, bubble, or exposed comm.

Pipeline (Narayanan et al. 2021, Sec. 2.2): with pp stages, m micro-batches per step and a micro-batch taking
t_f + t_b on a stage, 1F1B takes (m + pp - 1)(t_f + t_b): the bubble is (pp - 1)(t_f + t_b). The interleaved
schedule with v model chunks per rank shrinks the bubble to (pp - 1)(t_f + t_b) / v, at v times the pipeline
sends. Pipeline send/recv sits on the critical path of every micro-batch slot: 2 transfers (activation forward,
gradient backward) per chunk per slot.

Overlap rules (what hides behind what):
- tensor-parallel collectives are exposed (they sit between dependent GEMMs; Megatron-LM as published);
- expert-parallel all-to-all is exposed (routing depends on it);
- context-parallel K/V ring transfers overlap the attention of the previous chunk: exposed max(0, comm - attn);
- ZeRO-3/FSDP parameter all-gathers are prefetched one layer ahead: exposed max(0, comm - layer compute), and
  the gradient reduce-scatter likewise overlaps the next layer's backward;
- data-parallel gradient reduction (ZeRO-0/1/2) overlaps the backward of the last micro-batch, bucket by bucket
  (PyTorch DDP, Megatron --overlap-grad-reduce): exposed max(0, comm - backward of one micro-batch), unless
  overlap is off; the ZeRO-1/2 parameter all-gather after the optimizer is exposed.

Every function takes numpy arrays as well as numbers (the sizing search times plans that share a rank program as
arrays over them).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Seconds = TypeVar("Seconds", float, np.ndarray)
Count = TypeVar("Count", int, np.ndarray)


def bubble_s(pp: int, virtual_stages: int, microbatch_s: Seconds) -> Seconds:
    """Idle time per step of one stage under 1F1B (v = 1) or the interleaved schedule (v > 1)."""
    if pp <= 1:
        return microbatch_s * 0.0
    return (pp - 1) * microbatch_s / max(virtual_stages, 1)


def pipeline_slots(pp: int, num_microbatches: Count) -> Count:
    """Micro-batch slots a stage passes through in one step (busy plus bubble)."""
    return num_microbatches + pp - 1 if pp > 1 else num_microbatches


def exposed(comm_s: Seconds, hidden_behind_s: Seconds | float) -> Seconds:
    """Communication left on the critical path when it runs concurrently with `hidden_behind_s` of compute."""
    return np.maximum(0.0, comm_s - hidden_behind_s)  # type: ignore[return-value]
