"""Peak host memory of ``rbvit eval`` on a large image folder: the decoded cache must stream (memory-mapped,
never fully resident), so the peak stays under 4 GB plus the model however many images there are.

Writes N small synthetic JPEGs (default 50,000 at 64x48 px, wnid folders), then runs a clean eval at
224 px (timm ``mobilenetv3_small_050``, random weights) in a child process and reports its peak RSS next to
the peak RSS of a child that only loads the model, and the cache size on disk.

Usage: python benchmarks/bench_memory.py [--n 50000] [--size 64x48] [--batch-size 256] [--model M]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from make_synthetic import write_folder

LOAD_ONLY = "import sys; from robustbench_vit.models.loading import load_model; load_model(sys.argv[1], device='cpu', pretrained=False)"


def _peak_rss_mib(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of a child process (``ru_maxrss`` of the waited-for child)."""
    t = time.perf_counter()
    pid = subprocess.Popen(cmd).pid
    _, status, usage = __import__("os").wait4(pid, 0)
    if status != 0:
        raise SystemExit(f"child failed ({status}): {' '.join(cmd)}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--size", default="64x48")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--model", default="timm:mobilenetv3_small_050", help="a cheap 224 px network")
    ap.add_argument(
        "--workdir", default=None, help="folder for the images and the cache (default: a temp folder)"
    )
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_folder(root / "val", args.n, (w, h))
        print(f"wrote {args.n} JPEGs of {w}x{h} in {time.perf_counter() - t:.0f}s")
        base, _ = _peak_rss_mib([sys.executable, "-c", LOAD_ONLY, args.model])
        cmd = [
            sys.executable,
            "-m",
            "robustbench_vit.cli.commands",
            "-q",
            "eval",
            "-m",
            args.model,
            "--random-weights",
        ]
        cmd += ["-s", "clean", "--data", str(root / "val"), "--batch-size", str(args.batch_size)]
        cmd += ["--out", str(root / "out"), "--cache-dir", str(root / "cache"), "--format", "json"]
        peak, secs = _peak_rss_mib(cmd + ["--device", "cpu"])
        cache = sum(p.stat().st_size for p in (root / "cache").rglob("*") if p.is_file())
    print(f"clean eval of {args.n} images at 224 px ({args.model}, batch {args.batch_size}) in {secs:.0f}s")
    print(f"  peak RSS of the eval          {peak:8.0f} MiB")
    print(f"  peak RSS of loading the model {base:8.0f} MiB")
    print(
        f"  eval minus model              {peak - base:8.0f} MiB (target < 4096 MiB); cache on disk {cache / 2**30:.1f} GiB"
    )


if __name__ == "__main__":
    main()
