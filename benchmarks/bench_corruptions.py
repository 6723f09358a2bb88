"""Images/s of the torch corruption backend vs the imagecorruptions reference, per corruption.

Targets (issue 4): torch faster for every corruption on CPU; >= 50x faster overall on a GPU.
Usage: python benchmarks/bench_corruptions.py [--n 16] [--severity 3] [--device cuda]
"""

from __future__ import annotations

import argparse

import torch
from _common import IMAGENET_SAMPLES, timed

from robustbench_vit.data.decode import load_image
from robustbench_vit.perturbations.corruptions import TORCH_CORRUPTIONS, corrupt, reference_corrupt
from robustbench_vit.preprocessing import DataConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dc = DataConfig((3, 224, 224), 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3)
    files = sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[: args.n]
    x = (torch.stack([load_image(f, dc) for f in files]).float() / 255).to(dev)
    tot_t = tot_r = 0.0
    print(f"{len(files)} images 224x224, severity {args.severity}, torch on {dev}")
    for name in TORCH_CORRUPTIONS:
        g = torch.Generator().manual_seed(0)
        corrupt(x, name, args.severity, generator=g)  # warm-up
        t = timed(lambda n=name, g=g: corrupt(x, n, args.severity, generator=g), dev, repeat=2)
        r = timed(lambda n=name: reference_corrupt(x, n, args.severity, seed=0), dev)
        tot_t, tot_r = tot_t + t, tot_r + r
        print(f"  {name:18s} torch {len(files) / t:9.1f} img/s   reference {len(files) / r:8.1f} img/s   speed-up {r / t:6.1f}x")
    print(f"  overall speed-up {tot_r / tot_t:.1f}x (torch-implemented corruptions)")


if __name__ == "__main__":
    main()
