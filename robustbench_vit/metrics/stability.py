"""Prediction stability over perturbation sequences (ImageNet-P; Hendrycks & Dietterich 2019).

For a sequence of frames x_1..x_T, the pairs compared are (x_1, x_j) for noise sequences (each noisy
frame against the clean first frame) and (x_j, x_{j+d}) otherwise, where the difficulty d is the frame
stride (the reference's ``step_size``). Per sequence:

* flip probability: the share of pairs whose top-1 predictions differ;
* top-5 distance: for the 5 classes ranked highest on the first frame of a pair, sum over k = 0..4 of
  |k - min(rank on the second frame, 5)| (0-based ranks; ties in order of class index, as
  ``scipy.stats.rankdata(method="ordinal")``), which is the reference's ``dist(sigma, "top5")``;

each averaged over the sequence's pairs. Dataset values are means over sequences.
"""

from __future__ import annotations

import torch

__all__ = ["frame_pairs", "top5_indices", "flip_probability", "top5_distance"]


def frame_pairs(frames: int, noise: bool, stride: int = 1) -> tuple[list[int], list[int]]:
    """Indices (first, second) of the compared frames."""
    if noise:
        return [0] * (frames - 1), list(range(1, frames))
    return list(range(frames - stride)), list(range(stride, frames))


def top5_indices(logits: torch.Tensor) -> torch.Tensor:
    """(..., 5) classes of the 5 largest logits in rank order, ties in order of class index. Everything
    the metrics need: the top-1 prediction, and each top-5 class's rank capped at 5 on another frame."""
    return torch.sort(-logits.float(), dim=-1, stable=True).indices[..., :5]


def flip_probability(top5: torch.Tensor, noise: bool, stride: int = 1) -> torch.Tensor:
    """(B,) flip probability of each sequence from its (T, B, 5) top-5 classes."""
    a, b = frame_pairs(top5.shape[0], noise, stride)
    pred = top5[..., 0]
    return (pred[a] != pred[b]).double().mean(0)


def top5_distance(top5: torch.Tensor, noise: bool, stride: int = 1) -> torch.Tensor:
    """(B,) mean top-5 distance of each sequence from its (T, B, 5) top-5 classes: a class outside the
    second frame's top 5 has rank >= 5 there, which the distance caps at 5 anyway."""
    a, b = frame_pairs(top5.shape[0], noise, stride)
    first, second = top5[a], top5[b]  # (P, B, 5)
    hit = first[..., :, None] == second[..., None, :]  # (P, B, 5 first, 5 second)
    pos = torch.arange(5, device=top5.device)
    rank = torch.where(hit.any(-1), (hit * pos).sum(-1), torch.full_like(first, 5))
    return (rank - pos).abs().double().sum(-1).mean(0)
