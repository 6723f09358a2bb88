"""Run several benchmark scripts in one Python process (one line of ``script.py args`` each on stdin),
so a check of ten scripts pays the torch/timm import once. Exits 1 if any script failed, after all ran."""

from __future__ import annotations

import runpy
import shlex
import sys
import time
import traceback


def main() -> None:
    t0, failed = time.perf_counter(), []
    for line in sys.stdin:
        argv = shlex.split(line)
        if not argv:
            continue
        print(f"== [{time.perf_counter() - t0:.0f}s] {' '.join(argv)}", flush=True)
        sys.argv = argv
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as e:
            if e.code not in (0, None):
                failed.append(argv[0])
        except Exception:  # noqa: BLE001 - report and go on with the other scripts
            traceback.print_exc()
            failed.append(argv[0])
        sys.stdout.flush()
    if failed:
        print(f"== failed: {', '.join(failed)}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
