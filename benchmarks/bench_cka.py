"""CKA for every pair of layers: our batched estimator vs a naive per-pair recomputation (issue 14).

A ViT-S-sized network (``vit_small_patch16_224``, 12 blocks, random weights) reads ``--limit`` images
(default 1000, the shared ImageNet samples); its 12 block outputs per batch are captured once. Then:
  (a) ours: ``MinibatchCKA`` -- one Gram per layer and batch, all 144 pairs in one matrix product;
  (b) naive: for every pair, the two Grams and the three HSIC_1 values recomputed from the features
      (the per-pair loop of straightforward CKA code).
Both produce the same matrix (checked); the ratio (b) / (a) is printed. The forward passes are timed
separately and are not part of either figure.

Usage: python benchmarks/bench_cka.py [--limit N] [--batch-size B] [--device cuda] [--model M]
"""

from __future__ import annotations

import time

import torch
from _common import bench_parser, sync, wants_pretrained

from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.registry import open_dataset
from robustbench_vit.metrics.cka import MinibatchCKA, gram, hsic1
from robustbench_vit.models import probes
from robustbench_vit.models.loading import load_model


class Naive:
    """Per-pair minibatch CKA: every pair's two Grams and three HSIC_1 values recomputed per batch."""

    def __init__(self, layers: int) -> None:
        self.xy = torch.zeros(layers, layers, dtype=torch.float64)
        self.xx = torch.zeros(layers, layers, dtype=torch.float64)
        self.yy = torch.zeros(layers, layers, dtype=torch.float64)

    def update(self, feats: list[torch.Tensor]) -> None:
        if len(feats[0]) < 4:
            return
        for i in range(len(feats)):
            for j in range(len(feats)):
                k, l = gram(feats[i]), gram(feats[j])  # noqa: E741
                self.xy[i, j] += float(hsic1(k, l))
                self.xx[i, j] += float(hsic1(k, k))
                self.yy[i, j] += float(hsic1(l, l))

    def result(self) -> torch.Tensor:
        return self.xy / torch.sqrt(self.xx * self.yy)


def main() -> None:
    ap = bench_parser(__doc__, model="timm:vit_small_patch16_224", data=True, limit=1000, batch_size=100)
    ap.add_argument("--naive-limit", type=int, default=0, help="images for the naive loop (default: all)")
    args = ap.parse_args()
    args.random_weights = True  # timing needs no weights
    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=wants_pretrained(args))
    layers = probes.auto_layers(model.net)
    _, ds = open_dataset(args.data)
    idx = torch.arange(min(args.limit, len(ds))).numpy()
    cache = ImageCache(ds, model.data_config, __import__("tempfile").mkdtemp())
    cache.ensure(idx)
    ours, ref = MinibatchCKA(), Naive(len(layers))
    t_fwd = t_ours = t_naive = 0.0
    naive_batches = total = 0
    for s in range(0, len(idx), args.batch_size):
        t0 = time.perf_counter()
        x = cache.batch(idx[s : s + args.batch_size]).to(model.device).float() / 255
        feats, _ = probes.layer_outputs(model, x, layers)
        sync(model.device)
        t1 = time.perf_counter()
        ours.update(feats)
        sync(model.device)
        t2 = time.perf_counter()
        total += 1
        if not args.naive_limit or naive_batches * args.batch_size < args.naive_limit:
            ref.update(feats)
            naive_batches += 1
            t_naive += time.perf_counter() - t2
        t_fwd, t_ours = t_fwd + t1 - t0, t_ours + t2 - t1
    extrapolated = naive_batches < total
    t_naive *= total / naive_batches
    if not extrapolated:
        assert torch.allclose(ours.result(), ref.result(), rtol=1e-8, atol=1e-10), (
            "batched and per-pair differ"
        )
    pairs = len(layers) ** 2
    print(
        f"CKA {len(layers)} layers ({pairs} pairs), {len(idx)} images, batch {args.batch_size}, {model.device}: "
        f"forward passes {t_fwd:.1f} s; ours {t_ours:.2f} s; naive per-pair {t_naive:.1f} s"
        f"{' (extrapolated)' if extrapolated else ''}; ratio naive/ours = {t_naive / t_ours:.1f}x"
    )


if __name__ == "__main__":
    main()
