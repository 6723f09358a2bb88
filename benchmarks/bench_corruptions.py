"""Images/s of the torch corruption backend vs the imagecorruptions reference, per corruption.

Targets (issue 4): torch faster for every corruption on CPU; >= 50x faster overall on a GPU.
The reference always runs on the CPU (one image at a time, as it is built); the torch backend runs
batched on ``--device``. Both are warmed up first (numba compiles glass_blur's loop on first use).
Usage: python benchmarks/bench_corruptions.py [--n 64] [--severity 3] [--device cuda] [--ref-n 32]
"""

from __future__ import annotations

from pathlib import Path

import torch
from _common import bench_parser, timed

from robustbench_vit.data.decode import load_image
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.perturbations.corruptions import ALL_CORRUPTIONS, corrupt, reference_corrupt


def main() -> None:
    ap = bench_parser(__doc__, device="cpu", data=True)
    ap.add_argument("--n", type=int, default=64, help="images per torch batch")
    ap.add_argument("--ref-n", type=int, default=32, help="images timed through the reference")
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated corruption names")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dc = DataConfig((3, 224, 224), 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3)
    files = sorted(Path(args.data).glob("*/*.JPEG"))[: args.n]
    x_cpu = torch.stack([load_image(f, dc) for f in files]).float() / 255
    x, x_ref = x_cpu.to(dev), x_cpu[: args.ref_n]
    names = [n for n in ALL_CORRUPTIONS if not args.only or n in args.only.split(",")]
    tot_t = tot_r = 0.0
    slower = []
    print(
        f"{len(x)} images 224x224 per torch batch on {dev}; reference on {len(x_ref)} images; severity {args.severity}"
    )
    for name in names:
        g = torch.Generator().manual_seed(0)
        corrupt(x, name, args.severity, generator=g)  # warm-up (kernels, caches, numba)
        reference_corrupt(x_ref[:1], name, args.severity, seed=0)
        t = timed(lambda n=name, g=g: corrupt(x, n, args.severity, generator=g), dev, repeat=3) / len(x)
        r = timed(
            lambda n=name: reference_corrupt(x_ref, n, args.severity, seed=0), torch.device("cpu")
        ) / len(x_ref)
        tot_t, tot_r = tot_t + t, tot_r + r
        if t >= r:
            slower.append(name)
        print(
            f"  {name:18s} torch {1 / t:9.1f} img/s   reference {1 / r:8.1f} img/s   speed-up {r / t:6.1f}x"
        )
    print(f"  overall speed-up {tot_r / tot_t:.1f}x (time for all {len(names)} corruptions, one image each)")
    print("  torch slower for: " + (", ".join(slower) if slower else "none"))


if __name__ == "__main__":
    main()
