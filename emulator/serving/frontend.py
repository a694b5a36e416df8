"""The engine's API server streaming tokens to its clients: a serial path between the engine and what clients see.

An engine served over its OpenAI-compatible API (trtllm-serve, `python -m sglang.launch_server`, `vllm serve`)
streams every generated token back through Python in one process: it detokenizes incrementally, frames an event and
writes it. That work is serial, so past a rate tokens reach their clients late, whatever the device could do, and a
closed loop's clients, which send again when they see a finish, slow the engine down to that rate.
`host.frontend_token_s` is its time per output token (0: the path never binds). The measured ceilings that call for
it: closed loops of Llama 3.1 8B level off at about 9,300 output tokens/s on TensorRT-LLM 1.0 and 15,000-20,000 on
SGLang 0.5.6, whatever the tensor parallelism and concurrency, where the emulator's engine alone ran up to twice as
fast (stack_profiles/fits/*-hopper-frontend.json).

The path is a FIFO queue: an iteration's tokens join it when the iteration ends and it serves them at its rate, so a
client sees an event when the tokens ahead of it are streamed. A run of identical decode iterations is served as its
iterations one by one would be (`Frontend.stream`).
"""

from __future__ import annotations


class Frontend:
    """The stream path's backlog: the time it is busy until."""

    __slots__ = ("token_s", "free")

    def __init__(self, token_s: float) -> None:
        self.token_s, self.free = token_s, 0.0

    def stream(self, first: float, end: float, tokens: int, last: int) -> float:
        """When a client sees the last of `tokens` output tokens that a run of iterations hands over, the first
        iteration's at `first` and the final one's `last` tokens at `end`. Iteration by iteration the queue would end
        at the largest of: the backlog plus all the run's tokens, the first iteration plus all of them, the final
        one plus its own (the ends in between lie on the line between those two)."""
        if self.token_s <= 0.0 or tokens <= 0:
            return end
        backlog = (first if first > self.free else self.free) + tokens * self.token_s
        tail = end + last * self.token_s
        self.free = backlog if backlog > tail else tail
        return self.free


__all__ = ["Frontend"]
