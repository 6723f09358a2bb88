"""ImageNet-C from its files: images/s of the ``imagenet_c`` suite (decode of the released 224 px JPEGs,
cache, forward) vs the model-only forward at the same batch and dtype. Writes synthetic files first
unless ``--data`` names a real ImageNet-C root. On a GPU both decoders are timed: CPU threads
(``--decode cpu``) and batches on the GPU (nvjpeg, the default there).

Target (issue 15): >= 0.8 of the model-only forward on a GPU.
Usage: python benchmarks/bench_imagenet_c_files.py [--model M] [--data ROOT] [--per-cell N] [--device cuda] [--dtype bf16]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _common import bench_parser, timed, wants_pretrained
from make_synthetic import write_folder

from robustbench_vit.engine.runner import evaluate
from robustbench_vit.models.loading import load_model


def main() -> None:
    ap = bench_parser(__doc__, model="timm:test_resnet", batch_size=128)
    ap.add_argument(
        "--data", default=None, help="ImageNet-C root (default: synthetic files in a temp folder)"
    )
    ap.add_argument("--per-cell", type=int, default=64, help="synthetic images per (corruption, severity)")
    ap.add_argument("--workers", type=int, default=None, help="decode threads")
    args = ap.parse_args()
    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=wants_pretrained(args))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "imagenet-c"
        if not args.data:
            for name in ("gaussian_noise", "contrast"):
                for sev in range(1, 6):
                    write_folder(root / name / str(sev), args.per_cell, (224, 224), seed=1000 * sev)
        n = sum(1 for _ in root.rglob("*.JPEG"))
        common = dict(
            data=str(root), batch_size=args.batch_size, out=None, progress=False, workers=args.workers
        )

        decoders = ("cpu", "device") if model.device.type == "cuda" else ("cpu",)
        t_files = {}
        for decode in decoders:

            def from_files(
                decode: str = decode,
            ) -> None:  # a cold cache each time: decode is part of the cost
                evaluate(model, "imagenet_c", cache_dir=tempfile.mkdtemp(dir=tmp), decode=decode, **common)

            t_files[decode] = timed(from_files, model.device)
    x = torch.rand(args.batch_size, 3, *model.data_config.image_size, device=model.device)
    n_batches = -(-n // args.batch_size)

    def forward_only() -> None:
        with torch.no_grad():
            for _ in range(n_batches):
                model(x)

    forward_only()
    t_fwd = timed(forward_only, model.device, repeat=2)
    fwd_rate = n_batches * args.batch_size / t_fwd
    print(
        f"model {args.model} on {model.device} ({args.dtype}), {n} ImageNet-C files, batch {args.batch_size}"
    )
    for decode, t in t_files.items():
        where = "CPU threads" if decode == "cpu" else "GPU batches"
        rate = n / t
        print(
            f"  imagenet_c from files, decode on {where:11s} {rate:9.1f} img/s vs model-only forward "
            f"{fwd_rate:9.1f} img/s: ratio {rate / fwd_rate:.2f}"
            + (" (target >= 0.8)" if decode == decoders[-1] else "")
        )


if __name__ == "__main__":
    main()
