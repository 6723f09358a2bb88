"""Content identity: what a run spends on knowing *what* it evaluates (issue 24 §1).

Builds a synthetic ImageNet-shaped folder (``--files`` small files in 1000 class folders, each with
different bytes), then times, in one process:
- the cold identity: listing + hashing every file (what a first run pays; a real first run hashes
  while decoding, so it pays this only once);
- the warm identity: listing + stat lookups against the content index (every later run);
- the same warm identity after 1% of the files were rewritten in place (same size, mtime restored).
Prints the seconds and warm/cold ratios. Target: warm over 50k files under 2 s.

Usage: python benchmarks/bench_identity.py [--files 50000] [--bytes 4096]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from robustbench_vit.data import digests
from robustbench_vit.data.cache import current_identity
from robustbench_vit.data.datasets import image_folder


def build(root: Path, files: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    per = max(1, files // 1000)
    for c in range(1000):
        d = root / f"n{c:08d}"
        d.mkdir(parents=True)
        for k in range(per):
            p = d / f"img_{k}.JPEG"
            p.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            paths.append(p)
    return paths


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--bytes", type=int, default=4096)
    args = ap.parse_args()
    digests.SETTLED_NS = -(10**12)  # the files were just written: trust their stat tuples at once
    with tempfile.TemporaryDirectory() as tmp:
        data, cache = Path(tmp) / "data", Path(tmp) / "cache"
        paths = build(data, args.files, args.bytes)

        def identity() -> str:
            ds = image_folder(data)
            return current_identity(ds, np.arange(len(ds)), cache)

        cold, first = timed(identity)
        warm, second = timed(identity)
        assert first == second
        for p in paths[::100]:  # 1%: rewritten in place, size and mtime as before
            st = p.stat()
            p.write_bytes(bytes(reversed(p.read_bytes())))
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        changed, third = timed(identity)
        assert third != second, "a changed file must change the identity"
    n = len(paths)
    print(f"files: {n} x {args.bytes} bytes")
    print(f"cold identity (list + hash all):      {cold:7.2f} s")
    print(f"warm identity (list + stat lookups):  {warm:7.2f} s   ({cold / warm:5.1f}x faster than cold)")
    print(
        f"warm after 1% rewritten in place:     {changed:7.2f} s   ({cold / changed:5.1f}x faster than cold)"
    )
    print(f"target: warm < 2 s for 50k files -> {'met' if warm < 2 * n / 50_000 else 'MISSED'}")


if __name__ == "__main__":
    main()
