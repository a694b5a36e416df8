"""Decoder-only transformers as plain modules (gpt-fast style): Llama/Mistral/Qwen, GPT, and DeepSeek's MLA.

The full model is `Transformer` = `embed` -> `layers` (a ModuleList of `Block`) -> `head`. The tracer builds only
one representative of each (see `program.py`), so every piece takes its inputs explicitly: a block gets the hidden
state, its KV-cache tensors and the cache position. Attention always goes through `ops.attention` (one fused
kernel); the KV-cache write is part of the block's forward.

Shapes: B batch, S new tokens, T = start_pos + S cached tokens, H hidden, Hq/Hkv query/kv heads, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emulator.workloads import ops
from emulator.workloads.config import TransformerConfig
from emulator.workloads.mlp import MLP, linear
from emulator.workloads.moe import MoE


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalised in fp32, as Llama does: x * rsqrt(mean(x^2) + eps) * weight.
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def make_norm(config: TransformerConfig, dim: int, *, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps, dtype=dtype, device=device)
    return nn.LayerNorm(dim, eps=config.norm_eps, dtype=dtype, device=device)


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half form) with cos/sin tables for positions [0, num_positions)."""

    cos: torch.Tensor  # [P, D/2]
    sin: torch.Tensor

    def __init__(self, head_dim: int, num_positions: int, theta: float, *, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(num_positions, device=device, dtype=torch.float32), inv_freq)  # [P, D/2]
        self.register_buffer("cos", freqs.cos().to(dtype), persistent=False)
        self.register_buffer("sin", freqs.sin().to(dtype), persistent=False)

    def forward(self, x: torch.Tensor, start_pos: int) -> torch.Tensor:
        # x: [B, H, S, D] at positions start_pos .. start_pos + S - 1
        seq = x.shape[-2]
        cos, sin = self.cos[start_pos:start_pos + seq], self.sin[start_pos:start_pos + seq]  # [S, D/2]
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Attention(nn.Module):
    """Multi-head attention with grouped-query KV heads (Hkv divides Hq); RoPE or none (learned positions)."""

    def __init__(self, c: TransformerConfig, rotary: Rotary | None, *, dtype: torch.dtype,
                 device: torch.device | str, window: int = 0) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
        self.window = window  # sliding window (0: every key)
        self.wq = linear(c.hidden_size, c.num_heads * c.head_dim, c.qkv_bias, dtype, device)
        self.wk = linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.qkv_bias, dtype, device)
        self.wv = linear(c.hidden_size, c.num_kv_heads * c.head_dim, c.qkv_bias, dtype, device)
        self.wo = linear(c.num_heads * c.head_dim, c.hidden_size, c.out_bias, dtype, device)
        self.q_norm = RMSNorm(c.head_dim, c.norm_eps, dtype=dtype, device=device) if c.qk_norm else None
        self.k_norm = RMSNorm(c.head_dim, c.norm_eps, dtype=dtype, device=device) if c.qk_norm else None
        self.rotary = rotary

    def forward(self, x: torch.Tensor, k_cache: torch.Tensor | None = None, v_cache: torch.Tensor | None = None,
                start_pos: int = 0) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.wq(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)  # [B, Hq, S, D]
        k = self.wk(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, S, D]
        v = self.wv(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, S, D]
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q, start_pos), self.rotary(k, start_pos)
        if k_cache is not None and v_cache is not None:  # cache: [B, Hkv, >=T, D]
            k_cache[:, :, start_pos:start_pos + s].copy_(k)
            v_cache[:, :, start_pos:start_pos + s].copy_(v)
            k, v = k_cache[:, :, :start_pos + s], v_cache[:, :, :start_pos + s]  # [B, Hkv, T, D]
            if self.window and k.shape[2] > s + self.window - 1:  # a windowed layer reads its window's keys only
                k, v = k[:, :, -(s + self.window - 1):], v[:, :, -(s + self.window - 1):]
        y = ops.attention(q, k, v, causal=s > 1, scale=self.head_dim ** -0.5, window=self.window)  # [B, Hq, S, D]
        return self.wo(y.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim))  # [B, S, H]


class MLAttention(nn.Module):
    """DeepSeek multi-head latent attention.

    Training and prefill decompress the latent into per-head keys and values (q/k width nope + rope, v width
    v_head_dim). Decode (one query token per sequence, with a cache) uses the weight-absorbed form FlashMLA runs:
    q_nope is multiplied into the latent space by W_UK, attention is MQA over the cache (one kv head of width
    kv_lora_rank + rope, values the first kv_lora_rank columns), and W_UV maps the result back to v_head_dim.
    The cache holds kv_lora_rank + qk_rope_head_dim values per token: [B, >=T, R + Dr].
    """

    def __init__(self, c: TransformerConfig, rotary: Rotary, *, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        super().__init__()
        self.num_heads, self.rank = c.num_heads, c.kv_lora_rank
        self.nope, self.rope, self.v_dim = c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        self.scale = c.qk_head_dim ** -0.5
        qk = c.num_heads * c.qk_head_dim
        if c.q_lora_rank:
            self.wq_a = linear(c.hidden_size, c.q_lora_rank, False, dtype, device)
            self.q_norm = RMSNorm(c.q_lora_rank, c.norm_eps, dtype=dtype, device=device)
            self.wq_b = linear(c.q_lora_rank, qk, False, dtype, device)
        else:
            self.wq = linear(c.hidden_size, qk, False, dtype, device)
        self.wkv_a = linear(c.hidden_size, c.kv_lora_rank + c.qk_rope_head_dim, False, dtype, device)
        self.kv_norm = RMSNorm(c.kv_lora_rank, c.norm_eps, dtype=dtype, device=device)
        self.wkv_b = linear(c.kv_lora_rank, c.num_heads * (c.qk_nope_head_dim + c.v_head_dim), False, dtype, device)
        self.wo = linear(c.num_heads * c.v_head_dim, c.hidden_size, False, dtype, device)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, kv_cache: torch.Tensor | None = None, start_pos: int = 0) -> torch.Tensor:
        b, s, _ = x.shape
        nh, r = self.num_heads, self.rank
        q = self.wq_b(self.q_norm(self.wq_a(x))) if hasattr(self, "wq_a") else self.wq(x)
        q = q.view(b, s, nh, self.nope + self.rope).transpose(1, 2)  # [B, Hq, S, nope + rope]
        q_nope, q_pe = q.split([self.nope, self.rope], dim=-1)
        q_pe = self.rotary(q_pe, start_pos)
        c_kv, k_pe = self.wkv_a(x).split([r, self.rope], dim=-1)  # [B, S, R], [B, S, Dr]
        c_kv = self.kv_norm(c_kv)
        k_pe = self.rotary(k_pe.unsqueeze(1), start_pos)  # [B, 1, S, Dr]
        if kv_cache is not None:
            kv_cache[:, start_pos:start_pos + s, :r].copy_(c_kv)
            kv_cache[:, start_pos:start_pos + s, r:].copy_(k_pe.squeeze(1))
            if s == 1:
                return self._absorbed(q_nope, q_pe, kv_cache[:, :start_pos + s])
            c_kv, k_pe = kv_cache[:, :start_pos + s, :r], kv_cache[:, :start_pos + s, r:].unsqueeze(1)
        t = c_kv.shape[1]
        kv = self.wkv_b(c_kv).view(b, t, nh, self.nope + self.v_dim).transpose(1, 2)  # [B, Hq, T, nope + v]
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_pe.expand(b, nh, t, self.rope)), dim=-1)  # [B, Hq, T, nope + rope]
        q = torch.cat((q_nope, q_pe), dim=-1)  # [B, Hq, S, nope + rope]
        y = ops.attention(q, k, v, causal=s > 1, scale=self.scale)  # [B, Hq, S, v]
        return self.wo(y.transpose(1, 2).reshape(b, s, nh * self.v_dim))

    def _absorbed(self, q_nope: torch.Tensor, q_pe: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        b, nh, s, _ = q_nope.shape
        r = self.rank
        w = self.wkv_b.weight.view(nh, self.nope + self.v_dim, r)
        w_uk, w_uv = w[:, :self.nope], w[:, self.nope:]  # [Hq, nope, R], [Hq, v, R]
        q_lat = torch.bmm(q_nope.transpose(0, 1).reshape(nh, b * s, self.nope), w_uk)  # [Hq, B*S, R]
        q_lat = q_lat.view(nh, b, s, r).transpose(0, 1)  # [B, Hq, S, R]
        q = torch.cat((q_lat, q_pe), dim=-1)  # [B, Hq, S, R + Dr]
        kv = cache.unsqueeze(1)  # [B, 1, T, R + Dr]: MQA over the latent cache
        y = ops.attention(q, kv, kv[..., :r], causal=s > 1, scale=self.scale)  # [B, Hq, S, R]
        y = torch.bmm(y.transpose(0, 1).reshape(nh, b * s, r), w_uv.transpose(1, 2))  # [Hq, B*S, v]
        y = y.view(nh, b, s, self.v_dim).permute(1, 2, 0, 3).reshape(b, s, nh * self.v_dim)
        return self.wo(y)


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + ffn(norm(.)); ffn is an MLP or a mixture of experts."""

    def __init__(self, c: TransformerConfig, rotary: Rotary | None, *, moe: bool, dtype: torch.dtype,
                 device: torch.device | str, window: int = 0) -> None:
        super().__init__()
        self.attention_norm = make_norm(c, c.hidden_size, dtype=dtype, device=device)
        if c.attention == "mla":
            assert rotary is not None
            self.attention: nn.Module = MLAttention(c, rotary, dtype=dtype, device=device)
        else:
            self.attention = Attention(c, rotary, dtype=dtype, device=device, window=window)
        self.ffn_norm = make_norm(c, c.hidden_size, dtype=dtype, device=device)
        self.feed_forward: nn.Module = (MoE(c, dtype=dtype, device=device) if moe
                                        else MLP(c, c.ffn_hidden_size, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, *cache: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        # x: [B, S, H]; cache: (k_cache, v_cache) for GQA or (latent_cache,) for MLA, or nothing in training
        h = x + self.attention(self.attention_norm(x), *cache, start_pos=start_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class Embedding(nn.Module):
    """Token embedding, plus learned positions (GPT) for positions start_pos .. start_pos + S - 1."""

    def __init__(self, c: TransformerConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.tokens = nn.Embedding(c.vocab_size, c.hidden_size, dtype=dtype, device=device)
        self.positions = (nn.Embedding(c.max_seq_len, c.hidden_size, dtype=dtype, device=device)
                          if c.positions == "learned" else None)

    def forward(self, tokens: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        x = self.tokens(tokens)  # [B, S, H]
        if self.positions is not None:
            x = x + self.positions.weight[start_pos:start_pos + tokens.shape[1]]
        return x


class Head(nn.Module):
    """Final norm and lm_head; with targets, the mean cross-entropy in fp32 over all B*S positions."""

    def __init__(self, c: TransformerConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.norm = make_norm(c, c.hidden_size, dtype=dtype, device=device)
        self.output = linear(c.hidden_size, c.vocab_size, False, dtype, device)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *,
                last_only: bool = False) -> torch.Tensor:
        if last_only:
            x = x[:, -1:]  # [B, 1, H]: prefill needs the next token after the prompt only
        logits = self.output(self.norm(x))  # [B, S, V]
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def make_rotary(c: TransformerConfig, num_positions: int, *, dtype: torch.dtype,
                device: torch.device | str) -> Rotary | None:
    if c.attention == "mla":
        return Rotary(c.qk_rope_head_dim, num_positions, c.rope_theta, dtype=dtype, device=device)
    if c.positions == "rope":
        return Rotary(c.head_dim, num_positions, c.rope_theta, dtype=dtype, device=device)
    return None


def is_moe_layer(c: TransformerConfig, index: int) -> bool:
    return c.is_moe and index >= c.num_dense_layers


def layer_window(c: TransformerConfig, index: int) -> int:
    """The sliding window of layer `index` (0: it attends to every key)."""
    every = c.full_attention_every
    return 0 if not c.sliding_window or (every and (index + 1) % every == 0) else c.sliding_window


def kv_cache_shapes(c: TransformerConfig, batch_size: int, length: int) -> tuple[tuple[int, ...], ...]:
    """Shapes of one layer's cache tensors, in the order `Block.forward` takes them."""
    if c.attention == "mla":
        return ((batch_size, length, c.kv_lora_rank + c.qk_rope_head_dim),)
    shape = (batch_size, c.num_kv_heads, length, c.head_dim)
    return (shape, shape)


class Transformer(nn.Module):
    """The full model: embed -> layers -> head. `num_positions` sizes the RoPE tables (cache + new tokens)."""

    def __init__(self, c: TransformerConfig, *, num_positions: int, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        super().__init__()
        self.config = c
        rotary = make_rotary(c, num_positions, dtype=dtype, device=device)  # shared by all layers
        self.embed = Embedding(c, dtype=dtype, device=device)
        self.layers = nn.ModuleList(Block(c, rotary, moe=is_moe_layer(c, i), dtype=dtype, device=device,
                                          window=layer_window(c, i)) for i in range(c.num_layers))
        self.head = Head(c, dtype=dtype, device=device)
        if c.tie_embeddings:
            self.head.output.weight = self.embed.tokens.weight

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None, *,
                caches: list[tuple[torch.Tensor, ...]] | None = None, start_pos: int = 0,
                last_only: bool = False) -> torch.Tensor:
        x = self.embed(tokens, start_pos)
        for i, layer in enumerate(self.layers):
            x = layer(x, *(caches[i] if caches is not None else ()), start_pos=start_pos)
        return self.head(x, targets, last_only=last_only)
