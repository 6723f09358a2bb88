"""CPU forward passes with glibc's default malloc thresholds vs the ones ``rbvit`` sets at start
(:mod:`robustbench_vit.cpu_allocator`): model-only forward rate, kernel time and peak RSS, each in a fresh
process (malloc settings are per process), then ``rbvit eval -s clean`` with and without them.

Usage: python benchmarks/bench_allocator.py [--model timm:resnet18] [--batch-size 64] [--limit 256]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _common import IMAGENET_SAMPLES, bench_parser


def child(model_ref: str, batch_size: int, batches: int, tune: bool) -> None:
    """One process: set the thresholds (or not), time the model-only forward, print one JSON line."""
    import torch

    from robustbench_vit.cpu_allocator import keep_cpu_buffers
    from robustbench_vit.models.loading import load_model

    tuned = keep_cpu_buffers() if tune else False
    model = load_model(model_ref, device="cpu", pretrained=False)
    x = torch.rand(batch_size, 3, *model.data_config.image_size)
    with torch.no_grad():
        model(x)
        before = resource.getrusage(resource.RUSAGE_SELF)
        times = []
        for _ in range(batches):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "tuned": tuned,
                "median_s": sorted(times)[len(times) // 2],
                "sys_s": after.ru_stime - before.ru_stime,
                "user_s": after.ru_utime - before.ru_utime,
                "peak_rss_mib": after.ru_maxrss / 1024,
            }
        )
    )


def run_child(args, tune: bool) -> dict:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    cmd = [sys.executable, __file__, "--child", "1" if tune else "0", "--model", args.model]
    cmd += ["--batch-size", str(args.batch_size), "--batches", str(args.batches)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def eval_seconds(args, default: bool) -> float:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if default:
        env["RBVIT_MALLOC"] = "default"
    with tempfile.TemporaryDirectory() as tmp:
        env["RBVIT_CACHE"] = os.path.join(tmp, "cache")
        cmd = [sys.executable, "-m", "robustbench_vit.cli.commands", "-q", "eval", "-m", args.model]
        cmd += ["-s", "clean", "--random-weights", "--data", args.data, "--limit", str(args.limit)]
        cmd += ["-b", str(args.batch_size), "--device", "cpu", "-o", os.path.join(tmp, "out")]
        subprocess.run(cmd, env=env, capture_output=True, check=True)  # fills the decoded-image cache
        t = time.perf_counter()
        subprocess.run([*cmd[:-1], os.path.join(tmp, "out2")], env=env, capture_output=True, check=True)
        return time.perf_counter() - t


def main() -> None:
    ap = bench_parser(__doc__, model="timm:resnet18", batch_size=64, limit=256, data=True)
    ap.add_argument("--batches", type=int, default=5, help="timed forward passes per process")
    ap.add_argument("--child", choices=["0", "1"], help=argparse_hidden())
    args = ap.parse_args()
    if args.child is not None:
        child(args.model, args.batch_size, args.batches, args.child == "1")
        return
    default, tuned = run_child(args, False), run_child(args, True)
    if not tuned["tuned"]:
        print("malloc thresholds could not be set here (not glibc?): nothing to compare")
        return
    print(f"{args.model}, batch {args.batch_size}, CPU ({os.cpu_count()} cores), model-only forward:")
    for name, r in (("glibc default", default), ("rbvit's thresholds", tuned)):
        print(
            f"  {name:<20} {r['median_s']:.3f} s/batch  kernel {r['sys_s']:5.1f} s  user {r['user_s']:5.1f} s"
            f"  peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    print(f"  speed-up {default['median_s'] / tuned['median_s']:.2f}x")
    if IMAGENET_SAMPLES.is_dir() or os.path.isdir(args.data):
        slow, fast = eval_seconds(args, True), eval_seconds(args, False)
        print(f"rbvit eval -s clean, {args.limit} cached images: {slow:.1f} s default, {fast:.1f} s tuned")
        print(f"  speed-up {slow / fast:.2f}x (process start and model build included)")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
