"""Decode once: first pass (decode + resize + cache fill) vs second pass (memory-mapped reads), and
clean evaluation from the cache vs the model-only forward throughput at the same batch and dtype.

Usage: python benchmarks/bench_cache.py [--model M] [--data DIR] [--batch-size B] [--dtype bf16]
Targets (issue 2): second pass >= 5x faster than the first; cached clean eval >= 90% of model-only.
On a GPU the first pass is also timed with files decoded in batches on the GPU (nvjpeg, ``--decode``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import bench_parser, timed, wants_pretrained

from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.registry import open_dataset
from robustbench_vit.engine.runner import evaluate
from robustbench_vit.models.loading import load_model


def main() -> None:
    ap = bench_parser(__doc__, model="efficientnet_lite0", data=True, limit=1000, batch_size=128)
    args = ap.parse_args()

    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=wants_pretrained(args))
    _, ds = open_dataset(args.data)
    idx = np.arange(min(args.limit, len(ds)))
    with tempfile.TemporaryDirectory() as tmp:

        def first() -> None:
            ImageCache(ds, model.data_config, Path(tmp) / "c").ensure(idx)

        def second() -> None:
            c = ImageCache(ds, model.data_config, Path(tmp) / "c")
            for s in range(0, len(idx), args.batch_size):
                c.batch(idx[s : s + args.batch_size])  # uint8, as the loader reads it

        t1 = timed(first, model.device)
        t2 = timed(second, model.device, repeat=3)
        print(
            f"data pass over {len(idx)} images: first (decode+cache) {t1:.2f}s, second (cache) {t2:.3f}s, "
            f"speed-up {t1 / t2:.1f}x (target >= 5x)"
        )
        if model.device.type == "cuda" and ds.encoded is not None:

            def first_on_gpu() -> None:
                ImageCache(ds, model.data_config, Path(tmp) / "g", decode_device=model.device).ensure(idx)

            tg = timed(first_on_gpu, model.device)
            print(
                f"first pass: decode on CPU threads {len(idx) / t1:9.1f} img/s, in batches on the GPU "
                f"{len(idx) / tg:9.1f} img/s: speed-up {t1 / tg:.1f}x"
            )

        x = torch.rand(args.batch_size, 3, *model.data_config.image_size, device=model.device)
        n_batches = -(-len(idx) // args.batch_size)

        def model_only() -> None:
            with torch.no_grad():
                for _ in range(n_batches):
                    model(x)

        def cached_eval() -> None:
            evaluate(
                model,
                "clean",
                data=args.data,
                limit=len(idx) if len(idx) < len(ds) else None,
                out=None,
                progress=False,
                batch_size=args.batch_size,
                cache_dir=str(Path(tmp) / "c"),
            )

        cached_eval()  # warm-up (fills the cache for the exact subset)
        tm = timed(model_only, model.device, repeat=2)
        te = timed(cached_eval, model.device, repeat=2)
        print(
            f"clean eval from cache {len(idx) / te:.1f} img/s vs model-only forward {n_batches * args.batch_size / tm:.1f}"
            f" img/s on {model.device} ({args.dtype}): {100 * (len(idx) / te) / (n_batches * args.batch_size / tm):.0f}%"
            " of model-only (target >= 90%)"
        )


if __name__ == "__main__":
    main()
