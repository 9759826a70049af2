"""Attention, feed-forward and the pre-norm residual blocks every model in this package is built from.

All attention goes through `F.scaled_dot_product_attention`, so flash / memory-efficient kernels run
on GPU (also under bf16 autocast). Blocks take (batch, tokens, dim) with any batch size: the denoiser
folds frames, or latent indices, into the batch.

Conditioning follows DiT's adaLN-Zero: a Linear of the condition vector gives each sub-layer's
LayerNorm a scale and shift and its residual branch a gate. The Linear starts at zero, so every
conditioned sub-layer starts as the identity.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

# The CUDA flash / memory-efficient SDPA kernels put the batch on a grid axis limited to 2**16 - 1
# (pytorch/pytorch#146704); temporal attention over B * M latent trajectories can exceed it.
_SDPA_MAX_BATCH = 32768


class Attention(nn.Module):
    """Multi-head attention: self-attention on x, or cross-attention with queries from x and
    keys/values from `context` (whose width may differ: `context_dim`)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, qk_norm: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"Attention: dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        # QK-norm (ViT-22B, SD3): RMS-normalised queries and keys per head, with learnt gains, so the
        # logits' scale is learnt directly instead of through the size of the projections.
        head_dim = dim // heads
        self.q_norm = nn.RMSNorm(head_dim) if qk_norm else None
        self.k_norm = nn.RMSNorm(head_dim) if qk_norm else None

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """`key_mask` (B, keys) bool: True where a key may be attended to (each row needs one).
        `bias` (B, heads, queries, keys) float: added to the attention logits."""
        context = x if context is None else context
        q = self._split_heads(self.to_q(x))
        k, v = (self._split_heads(t) for t in self.to_kv(context).chunk(2, dim=-1))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if bias is not None:
            bias = bias.to(q.dtype)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        if q.shape[0] <= _SDPA_MAX_BATCH:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            masks = itertools.repeat(None) if mask is None else mask.split(_SDPA_MAX_BATCH)
            out = torch.cat([F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mc) for qc, kc, vc, mc in
                             zip(q.split(_SDPA_MAX_BATCH), k.split(_SDPA_MAX_BATCH), v.split(_SDPA_MAX_BATCH),
                                 masks)])
        b, h, n, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * d))


class FeedForward(nn.Sequential):
    """Token-wise GELU MLP with hidden width `mult * dim`."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__(nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim))


class AdaptiveLayerNorm(nn.Module):
    """LayerNorm for a pre-norm residual branch. Without `cond_dim` it is a plain affine LayerNorm and
    the gate is 1; with it, scale, shift and gate come from a zero-initialised Linear of the
    condition (adaLN-Zero), so the branch is switched off at initialisation."""

    def __init__(self, dim: int, cond_dim: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=cond_dim is None)
        self.modulation = None
        if cond_dim is not None:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 3 * dim))
            nn.init.zeros_(self.modulation[1].weight)
            nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Returns (normalised x, gate for the branch output). `cond` is (batch, cond_dim)."""
        if self.modulation is None:
            return self.norm(x), 1.0
        if cond is None:
            raise ValueError("this block was built with cond_dim, so forward needs cond (batch, cond_dim)")
        scale, shift, gate = self.modulation(cond).unsqueeze(1).chunk(3, dim=-1)
        return self.norm(x) * (1 + scale) + shift, gate


class ResidualAttention(nn.Module):
    """x + gate * Attention(adaLN(x), LayerNorm(context)): one pre-norm attention sub-layer."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, cond_dim: int | None = None,
                 qk_norm: bool = False):
        super().__init__()
        self.norm = AdaptiveLayerNorm(dim, cond_dim)
        self.context_norm = nn.LayerNorm(context_dim) if context_dim is not None else None
        self.attention = Attention(dim, heads, context_dim, qk_norm)

    def forward(self, x, context=None, cond=None, key_mask=None, bias=None):
        h, gate = self.norm(x, cond)
        if self.context_norm is not None:
            if context is None:
                raise ValueError("cross-attention sub-layer needs a context tensor (batch, tokens, context_dim)")
            context = self.context_norm(context)
        return x + gate * self.attention(h, context, key_mask, bias)


class ResidualFeedForward(nn.Module):
    """x + gate * FeedForward(adaLN(x)): one pre-norm feed-forward sub-layer."""

    def __init__(self, dim: int, cond_dim: int | None = None, mult: int = 4):
        super().__init__()
        self.norm = AdaptiveLayerNorm(dim, cond_dim)
        self.feed_forward = FeedForward(dim, mult)

    def forward(self, x, cond=None):
        h, gate = self.norm(x, cond)
        return x + gate * self.feed_forward(h)


class SelfAttentionBlock(nn.Module):
    """Transformer block: residual self-attention then residual feed-forward."""

    def __init__(self, dim: int, heads: int, cond_dim: int | None = None):
        super().__init__()
        self.attention = ResidualAttention(dim, heads, cond_dim=cond_dim)
        self.feed_forward = ResidualFeedForward(dim, cond_dim)

    def forward(self, x, context=None, cond=None):
        # `context` is in the signature only so both block kinds are called alike; passing one is a bug.
        if context is not None:
            raise ValueError("SelfAttentionBlock attends within x only; use CrossAttentionBlock for a context")
        return self.feed_forward(self.attention(x, cond=cond), cond)


class CrossAttentionBlock(nn.Module):
    """Transformer block: residual cross-attention from x to `context`, then residual feed-forward."""

    def __init__(self, dim: int, heads: int, context_dim: int, cond_dim: int | None = None, qk_norm: bool = False):
        super().__init__()
        self.attention = ResidualAttention(dim, heads, context_dim, cond_dim, qk_norm)
        self.feed_forward = ResidualFeedForward(dim, cond_dim)

    def forward(self, x, context=None, cond=None, key_mask=None, bias=None):
        return self.feed_forward(self.attention(x, context, cond, key_mask, bias), cond)
