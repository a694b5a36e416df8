"""The engine's API server streaming tokens to its clients: a serial path between the engine and what clients see.

An engine served over its OpenAI-compatible API (trtllm-serve, `python -m sglang.launch_server`, `vllm serve`)
streams every generated token back through Python in one process: it detokenizes incrementally, frames an event and
writes it. That work is serial, so past a rate tokens reach their clients late, whatever the device could do, and a
closed loop's clients, which send again when they see a finish, slow the engine down to that rate.
`host.frontend_token_s` is its time per output token (0: the path never binds). The measured ceilings that call for
it: closed loops of Llama 3.1 8B level off at about 9,300 output tokens/s on TensorRT-LLM 1.0 and 15,000-20,000 on
SGLang 0.5.6, whatever the tensor parallelism and concurrency, where the emulator's engine alone ran up to twice as
fast (stack_profiles/fits/*-hopper-frontend.json).

The path is a fluid FIFO queue: an iteration's tokens join it when the iteration makes them and it serves them at
its rate, so a client sees an event when the tokens ahead of it are streamed. A run of identical decode iterations
hands its tokens over as it makes them: the last of them is streamed after the later of the backlog's end and the
run's own last iteration.
"""

from __future__ import annotations


class Frontend:
    """The stream path's backlog: the time it is busy until."""

    __slots__ = ("token_s", "free")

    def __init__(self, token_s: float) -> None:
        self.token_s, self.free = token_s, 0.0

    def stream(self, start: float, end: float, tokens: int, last: int) -> float:
        """When a client sees the last of `tokens` output tokens made between `start` and `end` (`last` of them by
        the final iteration, at `end`)."""
        if self.token_s <= 0.0 or tokens <= 0:
            return end
        backlog = (start if start > self.free else self.free) + tokens * self.token_s
        tail = end + last * self.token_s
        self.free = backlog if backlog > tail else tail
        return self.free


__all__ = ["Frontend"]
