"""The `prompt_pool` key of an `inference:` section: the benchmark client draws each prompt from a fixed set of
distinct prompts, so prompts repeat and an engine with a prefix cache serves a repeat from its cache.

```yaml
  prompt_pool: 100                     # or {prompts: 100, sampling: shuffle, warmup_requests: 128}
```
aiperf generates `--num-dataset-entries` synthetic prompts (100 unless set: its ConversationDefaults.NUM) and sends
one of them with each request: drawn at random with replacement up to aiperf 0.2 (`sampling: random`,
dataset_manager.py's random.choice), from 0.3 each prompt once in a shuffled order before any repeats (`sampling:
shuffle`, its ShuffleSampler, the synthetic datasets' preferred strategy since ai-dynamo/aiperf PR 395). genai-perf's
`--num-dataset-entries` draws the same way (random). `warmup_requests`: requests the client sent before the
measured run (aiperf's `--warmup-request-count`), whose prompts the cache holds when the run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.fields import Fields

SAMPLINGS = ("shuffle", "random")
MAX_PROMPTS = 2**24  # distinct prompts of one pool: more than any benchmark's dataset


@dataclass(frozen=True, slots=True)
class PromptPool:
    """A client's set of `prompts` distinct prompts, each request taking one (`sampling`), after `warmup_requests`
    requests the run does not measure (their prompts already cached)."""

    prompts: int
    sampling: str = "shuffle"
    warmup_requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "sampling": self.sampling, "warmup_requests": self.warmup_requests}


def parse_prompt_pool(r: Fields, kw: Mapping[str, Any]) -> PromptPool:
    """`prompt_pool`: a number of prompts or {prompts, sampling, warmup_requests}; not with a trace (whose prompts are
    its own) or a shared prefix count larger than a prompt."""
    if "trace" in kw:
        raise r.error("prompt_pool", "cannot be combined with trace: a trace's requests carry their own prompts. "
                                     "Fix: delete prompt_pool, or delete trace.")
    if "disaggregation" in kw:
        raise r.error("prompt_pool", "is modelled for aggregated replicas only (a disaggregated prefill pool's "
                                     "cache of repeated prompts is not). Fix: delete prompt_pool, or delete "
                                     "disaggregation.")
    value = r.get("prompt_pool")
    if not isinstance(value, Mapping):
        return PromptPool(prompts=r.integer("prompt_pool", maximum=MAX_PROMPTS, why="distinct prompts",
                                            hint="prompt_pool: 100 (distinct prompts the client draws from)"))
    p = r.section("prompt_pool", ("prompts", "sampling", "warmup_requests"))
    return PromptPool(prompts=p.integer("prompts", maximum=MAX_PROMPTS, why="distinct prompts",
                                        hint="prompts: 100 (distinct prompts the client draws from)"),
                      sampling=p.choice("sampling", SAMPLINGS, "shuffle"),
                      warmup_requests=p.integer("warmup_requests", 0, minimum=0, maximum=MAX_PROMPTS,
                                                why="warm-up requests"))


__all__ = ["MAX_PROMPTS", "SAMPLINGS", "PromptPool", "parse_prompt_pool"]
