"""Does compiling pay? The model-only forward, eager vs ``torch.compile`` (default mode, and
``reduce-overhead``, which replays CUDA graphs and removes the per-batch launch overhead), at the same
batch and dtype. Compilation time is reported apart from the steady-state rate.

Usage: python benchmarks/bench_compile.py [--model M] [--batch-size B] [--device cuda] [--dtype bf16]
Decides issue 15's open question: rbvit runs eager; a ratio well above 1 here would justify a
``--compile`` option.
"""

from __future__ import annotations

import time

import torch
from _common import bench_parser, timed, wants_pretrained

from robustbench_vit.models.loading import load_model


def main() -> None:
    ap = bench_parser(__doc__, model="timm:test_vit", batch_size=64)
    ap.add_argument("--batches", type=int, default=20, help="forward passes per timing")
    ap.add_argument("--modes", default="default,reduce-overhead", help="torch.compile modes to time")
    args = ap.parse_args()
    model = load_model(args.model, device=args.device, dtype=args.dtype, pretrained=wants_pretrained(args))
    x = torch.rand(args.batch_size, 3, *model.data_config.image_size, device=model.device)

    def rate(fn) -> float:  # noqa: ANN001
        def run() -> None:
            with torch.no_grad():
                for _ in range(args.batches):
                    fn(x)

        run()
        return args.batches * args.batch_size / timed(run, model.device, repeat=2)

    eager = rate(model)
    print(
        f"model {args.model} on {model.device} ({args.dtype}), batch {args.batch_size}: eager {eager:9.1f} img/s"
    )
    for mode in args.modes.split(","):
        try:
            compiled = torch.compile(model, mode=mode)
            t = time.perf_counter()
            with torch.no_grad():
                compiled(x)
            t_compile = time.perf_counter() - t
            r = rate(compiled)
        except Exception as e:  # no compiler, an unsupported op: report and go on
            print(f"  torch.compile({mode}): failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        print(
            f"  torch.compile({mode}) {r:9.1f} img/s after {t_compile:.0f} s compiling: "
            f"ratio {r / eager:.2f} vs eager (pays if well above 1)"
        )


if __name__ == "__main__":
    main()
