"""An engine's prefix cache serving repeated prompts (a client's prompt pool, `scenario.prompt_pool`), as the
simulator's admissions and completions drive it.

Once a request has prefilled its prompt, the prompt's whole KV blocks (all but the last token, which is computed
again for its logits) stay cached as an entry for that prompt. A later request with the same prompt takes the entry's
tokens from the cache and prefills only past them (its attention still reads them), allocating KV for the rest only
(vLLM's automatic prefix caching, SGLang's radix cache, TensorRT-LLM's block reuse). While any running request holds
an entry its blocks count as used; when the last one finishes (or is preempted) they stay cached but evictable, and
the least recently released entry goes first when running requests need the room (vLLM's free-block queue,
SGLang's LRU eviction). The warm-up requests' prompts are cached when the run starts, as their requests left them.
A request admitted while another still prefills its prompt computes its own copy (the cache holds computed blocks).
"""

from __future__ import annotations

from collections import OrderedDict


class PromptCache:
    """Entries of the prompts a run's requests share, in KV tokens x beams (`held`: what running requests hold, in
    the simulator's `used`; `free`: evictable entries, least recently released first)."""

    __slots__ = ("beams", "block", "cached", "charge", "free", "free_tokens", "holder", "lengths", "prompt", "refs",
                 "served")

    def __init__(self, prompt: list[int], lengths: list[int], warm: list[int], block_tokens: int, beams: int,
                 cap: int) -> None:
        self.prompt, self.lengths, self.block, self.beams = prompt, lengths, block_tokens, beams
        self.cached: dict[int, int] = {}  # prompt -> its entry's tokens
        self.charge: dict[int, int] = {}  # prompt -> the entry's KV (x beams) that no other holding accounts for
        self.refs: dict[int, int] = {}  # prompt -> running requests holding its entry
        self.holder: dict[int, int] = {}  # request -> the prompt whose entry it holds
        self.free: OrderedDict[int, int] = OrderedDict()  # unheld entries -> their KV, least recently released first
        self.free_tokens = 0
        self.served = 0  # prompt tokens taken from the cache
        for p in warm:  # the warm-up's requests finished in this order
            if p in self.free:
                self.free.move_to_end(p)
                continue
            tokens = self.entry_tokens(p)
            if tokens:
                self.cached[p], self.charge[p], self.free[p] = tokens, tokens * beams, tokens * beams
                self.free_tokens += tokens * beams
        self.evict(0, cap)

    def entry_tokens(self, p: int) -> int:
        """The tokens of prompt p a cache entry holds: its whole blocks short of the last token."""
        return (self.lengths[p] - 1) // self.block * self.block

    def lookup(self, r: int) -> tuple[int, int]:
        """(tokens request r would take from the cache, KV it would bring back into use from the evictable entries)."""
        p = self.prompt[r]
        tokens = self.cached.get(p, 0)
        return tokens, self.free.get(p, 0)

    def hold(self, r: int, tokens: int) -> None:
        """Request r is admitted taking `tokens` of its prompt from the cache (its entry is held while it runs)."""
        p = self.prompt[r]
        if p in self.free:
            self.free_tokens -= self.free.pop(p)
        self.refs[p] = self.refs.get(p, 0) + 1
        self.holder[r] = p
        self.served += tokens

    def store(self, r: int, own: int) -> int:
        """Request r has prefilled its prompt, holding `own` of its tokens from elsewhere (a shared prefix): its blocks
        become the prompt's entry if the cache has none. Returns the request's tokens held from elsewhere now."""
        p = self.prompt[r]
        if p in self.cached or r in self.holder:
            return own
        tokens = self.entry_tokens(p)
        if tokens <= own:
            return own
        self.cached[p], self.charge[p], self.refs[p], self.holder[r] = tokens, (tokens - own) * self.beams, 1, p
        return tokens

    def release(self, r: int) -> int:
        """Request r finished or was preempted: KV it leaves to the cache (evictable once no request holds it)."""
        p = self.holder.pop(r, None)
        if p is None:
            return 0
        self.refs[p] -= 1
        if self.refs[p]:
            return 0
        del self.refs[p]
        self.free[p] = self.charge[p]
        self.free_tokens += self.charge[p]
        return self.charge[p]

    def evict(self, used: int, cap: int) -> None:
        """Drop the least recently released entries until they fit beside `used`."""
        while self.free and used + self.free_tokens > cap:
            p, kv = self.free.popitem(last=False)
            self.free_tokens -= kv
            del self.cached[p], self.charge[p]


__all__ = ["PromptCache"]
