"""Fourier heat-map cost: perturbed images per second vs a plain forward pass over the same images.

The heat map evaluates images x bases perturbed images; target (issue 5): within 1.5x of the pure
model cost per perturbed image. Default model: timm's tiny ``test_resnet`` (random weights) so the
pipeline, not the network, is measured on CPU; pass ``--model efficientnet_lite0 --device cuda`` etc.

Usage: python benchmarks/bench_fourier.py [--model M] [--limit N] [--stride S] [--batch-size B]
"""

from __future__ import annotations

import tempfile

import torch
from _common import bench_parser, timed, wants_pretrained

from robustbench_vit.engine.runner import evaluate
from robustbench_vit.models.loading import load_model
from robustbench_vit.perturbations.fourier import half_plane_frequencies
from robustbench_vit.suites.fourier import default_radius


def main() -> None:
    ap = bench_parser(__doc__, model="timm:test_resnet", data=True, limit=32, batch_size=512)
    ap.add_argument("--stride", type=int, default=4)
    args = ap.parse_args()

    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=wants_pretrained(args))
    n_bases = len(half_plane_frequencies(default_radius(model.data_config.image_size), args.stride))
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(data=args.data, limit=args.limit, cache_dir=tmp, out=None, progress=False)
        evaluate(model, "clean", batch_size=args.batch_size, **common)  # fill the cache
        t_map = timed(
            lambda: evaluate(
                model,
                "fourier_heatmap",
                batch_size=args.batch_size,
                suite_params={"stride": args.stride},
                **common,
            ),
            model.device,
        )
    total = args.limit * n_bases
    x = torch.rand(args.batch_size, 3, *model.data_config.image_size, device=model.device)
    n_batches = -(-total // args.batch_size)

    def forward_only() -> None:
        with torch.no_grad():
            for _ in range(n_batches):
                model(x)

    t_fwd = timed(forward_only, model.device, repeat=2)
    per_map, per_fwd = t_map / total, t_fwd / (n_batches * args.batch_size)
    print(
        f"model {args.model} on {model.device} ({args.dtype}): {args.limit} images x {n_bases} bases = {total} perturbed"
    )
    print(f"  heat map   {total / t_map:9.1f} perturbed img/s")
    print(f"  forward    {1 / per_fwd:9.1f} img/s (same batch size, random inputs)")
    print(f"  cost ratio heat map / forward per image = {per_map / per_fwd:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
