"""Synthetic image folders for benchmarks that must run from a bare checkout (no shared data, no
downloads): an ImageNet-val-like folder (``<root>/<wnid>/*.JPEG``, real wnids so labels map) and an
ImageNet-C-like tree (``<root>/<corruption>/<severity>/<wnid>/*.JPEG``, 224 px files as released).

Usage: python benchmarks/make_synthetic.py OUT [--n 1000] [--size 500x375] [--imagenet-c N] [--workers 8]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from robustbench_vit.data.labels import get_label_space


def _image(seed: int, w: int, h: int) -> Image.Image:
    """Smooth random colour fields plus noise: compresses like a photo, not like flat colour."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 32, 2), max(w // 32, 2), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    noisy = base + rng.integers(-12, 13, base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_folder(root: Path, n: int, size: tuple[int, int], workers: int = 8, seed: int = 0) -> Path:
    """``n`` JPEGs spread over the ImageNet wnids (one per class before the second round)."""
    wnids = get_label_space("imagenet1k").wnids

    def one(i: int) -> None:
        folder = root / wnids[i % len(wnids)]
        folder.mkdir(parents=True, exist_ok=True)
        _image(seed + i, *size).save(folder / f"synthetic_{i:06d}.JPEG", quality=90)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=1000, help="images in OUT/val")
    ap.add_argument("--size", default="500x375", help="WxH of the val images (ImageNet's typical size)")
    ap.add_argument(
        "--imagenet-c", type=int, default=0, help="images per (corruption, severity) in OUT/imagenet-c"
    )
    ap.add_argument("--corruptions", default="gaussian_noise,contrast", help="corruption folders to write")
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    write_folder(out / "val", args.n, (w, h), args.workers)
    if args.imagenet_c:
        for c, name in enumerate(args.corruptions.split(",")):
            for sev in range(1, 6):
                write_folder(
                    out / "imagenet-c" / name / str(sev),
                    args.imagenet_c,
                    (224, 224),
                    args.workers,
                    seed=10**6 * (c * 5 + sev),
                )
    print(out)


if __name__ == "__main__":
    main()
