"""The CPU resize + crop: Pillow (timm's pixels, what the cache stores) vs torchvision's tensor resize
(what it stored before; within a level or two), beside the JPEG decode they follow, per image on one core.

Usage: python benchmarks/bench_geometry.py [--data DIR] [--limit N] [--interpolation bicubic] [--crop-pct 0.9]
What matters: the geometry's share of a cache fill (decode + geometry); the cache is filled once per
(dataset, geometry), then every suite reads it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from _common import bench_parser

from robustbench_vit.data.decode import _INTERP, apply_geometry, decode_rgb, read_bytes, tensor_geometry
from robustbench_vit.data.preprocessing import DataConfig


def per_image(fn, items) -> float:  # noqa: ANN001
    t = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t) / len(items) * 1e3


def main() -> None:
    ap = bench_parser(__doc__, data=True, limit=300)
    ap.add_argument("--interpolation", default="bicubic", choices=sorted(_INTERP))
    ap.add_argument("--crop-pct", type=float, default=0.9, help="0.9: ViT's 248 px resize (default)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one fill thread's view
    files = sorted(Path(args.data).rglob("*.JPEG"))[: args.limit]
    encoded = [read_bytes(f) for f in files]
    images = [decode_rgb(e) for e in encoded]
    dc = DataConfig((3, 224, 224), args.crop_pct, args.interpolation, (0.5,) * 3, (0.5,) * 3)
    decode = min(per_image(decode_rgb, encoded) for _ in range(3))
    pil = min(per_image(lambda im: apply_geometry(im, dc), images) for _ in range(3))
    tensor = min(per_image(lambda im: tensor_geometry(im, dc), images) for _ in range(3))
    exact = sum(torch.equal(apply_geometry(im, dc), tensor_geometry(im, dc)) for im in images)
    print(
        f"{len(files)} images, {args.interpolation} {args.crop_pct}: decode {decode:.2f} ms, geometry with Pillow {pil:.2f} ms, "
        f"with tensors {tensor:.2f} ms (Pillow / tensors {pil / tensor:.2f}x); "
        f"fill per image (decode + geometry): {(decode + pil) / (decode + tensor):.2f}x the tensor fill; "
        f"images where the two geometries agree exactly: {exact}/{len(images)}"
    )


if __name__ == "__main__":
    main()
