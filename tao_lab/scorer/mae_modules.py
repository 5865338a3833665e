"""Network parts of the temporal MAE scorer (torch): tokenizer, learned pooling, temporal encoder, heads, masks.

Shapes: B windows, T positions (frames of one track), D = total input feature columns, K = feature tokens of one
object, d = model width.

- :class:`FeatureTokenizer`: the per-object feature vector (D,) -> K tokens (K, d). Every feature group (velocity,
  geometry, appearance, deep, ...) is cut into ``tokens`` equal chunks, each chunk projected by the group's own
  linear layer, plus a learned embedding per token slot (which group, which chunk).
- :class:`TokenPooling`: K tokens -> one object embedding (d,): ``gap`` (mean over tokens), ``attention`` (learned
  queries attend over the tokens; the query outputs are averaged) or ``hybrid`` (both, concatenated and projected).
  The pooling is trained with the rest and lives in the state_dict, so train and test embeddings come from the
  same weights.
- :class:`TemporalMaeNet`: pooled embeddings (B, T, d) -> masked positions replaced by a learned mask token ->
  sinusoidal positional encoding -> transformer encoder (padding masked out) -> heads:
  reconstruction (normalised input features of every position), forecasting (a separate head for the last
  positions of a window, hidden from the encoder), contrastive projection (of the per-frame pooled embeddings,
  used for InfoNCE between neighbouring steps and for the temporal-consistency score).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F


class FeatureTokenizer(nn.Module):
    """(…, D) feature vectors -> (…, K, d) tokens; group g (``dims[g]`` columns) becomes ``tokens[g]`` tokens."""

    def __init__(self, dims: Sequence[int], tokens: Sequence[int], d_model: int):
        super().__init__()
        if len(dims) != len(tokens) or not dims:
            raise ValueError(f"dims {list(dims)} and tokens {list(tokens)} must be non-empty and of equal length")
        self.dims = [int(d) for d in dims]
        self.tokens = [max(1, min(int(k), int(d))) for k, d in zip(tokens, dims)]
        self.chunk = [math.ceil(d / k) for d, k in zip(self.dims, self.tokens)]
        self.proj = nn.ModuleList(nn.Linear(c, d_model) for c in self.chunk)
        self.slot = nn.Parameter(torch.randn(sum(self.tokens), d_model) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, start = [], 0
        lead = x.shape[:-1]
        for d, k, c, proj in zip(self.dims, self.tokens, self.chunk, self.proj):
            part = x[..., start:start + d]
            start += d
            if k * c != d:
                part = F.pad(part, (0, k * c - d))
            out.append(proj(part.reshape(*lead, k, c)))
        return torch.cat(out, dim=-2) + self.slot


class TokenPooling(nn.Module):
    """(N, K, d) tokens -> (N, d): ``gap`` | ``attention`` (``queries`` learned queries) | ``hybrid``."""

    MODES = ("gap", "attention", "hybrid")

    def __init__(self, d_model: int, mode: str = "hybrid", queries: int = 2, heads: int = 4):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown pooling {mode!r}: expected one of {self.MODES}")
        self.mode = mode
        if mode in ("attention", "hybrid"):
            self.queries = nn.Parameter(torch.randn(max(1, int(queries)), d_model) * 0.02)
            self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
            self.token_norm = nn.LayerNorm(d_model)
        if mode == "hybrid":
            self.mix = nn.Linear(2 * d_model, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        gap = tokens.mean(dim=-2)
        if self.mode == "gap":
            return self.norm(gap)
        kv = self.token_norm(tokens)
        q = self.queries.unsqueeze(0).expand(len(tokens), -1, -1)
        att = self.attn(q, kv, kv, need_weights=False)[0].mean(dim=-2)
        if self.mode == "attention":
            return self.norm(att)
        return self.norm(self.mix(torch.cat([gap, att], dim=-1)))


def sinusoidal_encoding(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model) fixed sinusoidal positional encoding (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe


class TemporalMaeNet(nn.Module):
    """Object tokenizer + pooling + masked temporal transformer + reconstruction/forecast/contrastive heads."""

    def __init__(self, dims: Sequence[int], tokens: Sequence[int], window: int, d_model: int = 64, depth: int = 2,
                 heads: int = 4, ff_mult: int = 2, dropout: float = 0.1, pooling: str = "hybrid",
                 pool_queries: int = 2, proj_dim: int = 32, forecast: bool = False):
        super().__init__()
        self.tokenizer = FeatureTokenizer(dims, tokens, d_model)
        self.pool = TokenPooling(d_model, pooling, pool_queries, heads)
        self.mask_token = nn.Parameter(torch.zeros(d_model))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("pos", sinusoidal_encoding(int(window), d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_mult * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        out_dim = int(sum(dims))
        self.recon_head = nn.Linear(d_model, out_dim)
        self.forecast_head = nn.Linear(d_model, out_dim) if forecast else None
        self.contrast_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, proj_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) normalised features -> (B, T, d) pooled per-frame object embeddings."""
        b, t, _ = x.shape
        tokens = self.tokenizer(x.reshape(b * t, -1))
        return self.pool(tokens).reshape(b, t, -1)

    def project(self, emb: torch.Tensor) -> torch.Tensor:
        """(…, d) embeddings -> (…, proj_dim) unit vectors of the contrastive head."""
        return F.normalize(self.contrast_head(emb), dim=-1)

    def encode(self, emb: torch.Tensor, valid: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Masked positions replaced by the mask token, positions encoded, padding ignored -> (B, T, d)."""
        h = torch.where(masked.unsqueeze(-1), self.mask_token.to(emb.dtype), emb)
        h = h + self.pos[: h.shape[1]]
        return self.encoder(h, src_key_padding_mask=~valid)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, masked: torch.Tensor,
                emb: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        emb = self.embed(x) if emb is None else emb
        h = self.encode(emb, valid, masked)
        out = {"emb": emb, "recon": self.recon_head(h)}
        if self.forecast_head is not None:
            out["forecast"] = self.forecast_head(h)
        return out


def random_mask(valid: torch.Tensor, ratio: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(B, T) bool random mask over the valid positions of each window: round(ratio * L) of its L positions
    (at least 1 and, when L >= 2, at most L - 1 so some context stays visible)."""
    b, t = valid.shape
    length = valid.sum(dim=1)
    n_mask = torch.round(length.float() * float(ratio)).long()
    n_mask = torch.minimum(torch.clamp(n_mask, min=1), torch.clamp(length - 1, min=1))
    noise = torch.rand(b, t, generator=generator, device="cpu").to(valid.device)
    noise = noise.masked_fill(~valid, float("inf"))
    rank = noise.argsort(dim=1).argsort(dim=1)
    return (rank < n_mask[:, None]) & valid


def future_mask(valid: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool: the last ``steps`` valid positions of every window that has more than ``steps`` positions."""
    length = valid.sum(dim=1, keepdim=True)
    pos = torch.arange(valid.shape[1], device=valid.device)[None, :]
    return valid & (pos >= length - int(steps)) & (length > int(steps))


def grouped_error(pred: torch.Tensor, target: torch.Tensor, dims: Sequence[int],
                  weights: torch.Tensor) -> torch.Tensor:
    """(…,) weighted mean over feature groups of the per-group mean squared error (each group counts by its weight,
    not by its number of columns, so a 256-d appearance vector does not drown a 10-d velocity vector)."""
    sq = (pred - target) ** 2
    parts = torch.stack([p.mean(dim=-1) for p in torch.split(sq, list(dims), dim=-1)], dim=-1)
    return (parts * weights).sum(dim=-1) / weights.sum()


def neighbour_info_nce(z: torch.Tensor, valid: torch.Tensor, group: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """InfoNCE between neighbouring steps: the anchor z[b, t] must pick its own next step z[b, t+1] among the
    (t+1)-th steps of all windows in the batch. Windows of the same sequence (``group``) are not negatives.

    z: (B, T, p) unit vectors; valid: (B, T); group: (B,). Returns the mean loss over valid pairs (0 if none).
    """
    b, t, _ = z.shape
    if t < 2:
        return z.sum() * 0.0
    anchor, cand = z[:, :-1], z[:, 1:]
    logits = torch.einsum("btp,ctp->tbc", anchor, cand) / float(temperature)  # (T-1, B, B)
    cand_ok = valid[:, 1:].transpose(0, 1)[:, None, :].expand(-1, b, -1)      # candidate c exists at t+1
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    same = (group[:, None] == group[None, :]) & ~eye
    # the own next step always stays a candidate so no row is all -inf (NaN gradients) even when padded
    cand_ok = (cand_ok & ~same[None]) | eye[None]
    logits = logits.masked_fill(~cand_ok, float("-inf"))
    logp = torch.log_softmax(logits, dim=-1)
    diag = torch.diagonal(logp, dim1=1, dim2=2)                               # (T-1, B)
    pair_ok = (valid[:, :-1] & valid[:, 1:]).transpose(0, 1)
    if not bool(pair_ok.any()):
        return z.sum() * 0.0
    return -(diag[pair_ok]).mean()
