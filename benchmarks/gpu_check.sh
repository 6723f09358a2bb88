#!/usr/bin/env bash
# The one GPU check (issue 15): the GPU tests (pytest -m gpu), then every speed ratio rbvit promises,
# measured against the model-only forward or the reference implementation in the same run.
# Needs only `pip install -e .[dev]`: timm random weights, synthetic JPEG files, no downloads.
#
#   benchmarks/gpu_check.sh                      # H200-sized: resnet50 + ViT-B/16, bf16, batch 256 (< 8 min)
#   benchmarks/gpu_check.sh --device cpu --quick # the same script on tiny models (CI runs this)
#   benchmarks/gpu_check.sh --wheels .whl --log OUT/gpu_check.log  # a GPU machine with no network:
#       rbvit from this checkout, its missing dependencies from wheels (benchmarks/offline_wheels.sh)
#
# Prints the versions and the device, the tests' result, each benchmark's lines as it runs, then one
# summary line per ratio ("target" lines). A failure does not stop what follows; the exit status is 1.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
QUICK=0
WHEELS=
LOG_COPY=
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --log) LOG_COPY="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (use --device DEV, --quick, --wheels DIR, --log FILE)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export RBVIT_CACHE="$WORK/cache" PYTHONUNBUFFERED=1
LOG=${LOG_COPY:-$WORK/log}
: >"$LOG"
FAILED=()
if [ -n "$WHEELS" ]; then  # no network: install nothing system-wide, put this checkout and the wheels on the path
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "gpu_check.sh: no wheels in $WHEELS (run benchmarks/offline_wheels.sh)" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$WHEELS"/*.whl \
    || { echo "gpu_check.sh: installing the wheels in $WHEELS failed" >&2; exit 2; }
  export PYTHONPATH="$PWD:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - "$DEVICE" <<'PYEOF' 2>&1 | tee -a "$LOG"
import platform, sys
import numpy, timm, torch, torchvision
import robustbench_vit
print(f"== python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}, numpy {numpy.__version__}, rbvit {robustbench_vit.__version__}")
if sys.argv[1].startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu_check.sh: --device cuda but torch sees no CUDA device (use --device cpu --quick)")
    p = torch.cuda.get_device_properties(0)
    print(f"== device {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}")
PYEOF
[ "${PIPESTATUS[0]}" = 0 ] || exit 2
# correctness first: the device-agreement tests, then the speed figures
if [ -z "${GPU_CHECK_NO_PYTEST:-}" ]; then  # set by the test that runs this script inside pytest
  echo "== pytest -m gpu" | tee -a "$LOG"
  "$PY" -m pytest -q -m gpu -p no:cacheprovider -rsP 2>&1 | tee -a "$LOG"  # -rP: the agreement figures printed
  [ "${PIPESTATUS[0]}" = 0 ] || FAILED+=("pytest -m gpu")
fi

if [ "$QUICK" = 1 ]; then
  N=48; B=16; DT=fp32; REF_N=1; PGD_STEPS=2; FOURIER_N=2; PER_CELL=4; AA_N=2; GLASS_N=4
  ONLY_CORRUPTIONS=gaussian_noise,glass_blur,contrast  # quick: a noise, the numba loop, a colour op
  CNN=timm:test_resnet; VIT=timm:test_vit
else
  N=4096; B=256; DT=bf16; REF_N=16; PGD_STEPS=10; FOURIER_N=64; PER_CELL=512; AA_N=256; GLASS_N=64
  CNN=timm:resnet50; VIT=timm:vit_base_patch16_224
fi
COMMON=(--device "$DEVICE" --dtype "$DT" --random-weights)

JOBS=()
job() { JOBS+=("$(printf '%q ' "$@")"); }  # one benchmark script and its arguments

"$PY" benchmarks/make_synthetic.py "$WORK/data" --n "$N" >/dev/null || exit 2
DATA="$WORK/data/val"
for M in "$CNN" "$VIT"; do
  job bench_cache.py --model "$M" --data "$DATA" --limit "$N" --batch-size "$B" "${COMMON[@]}"
done
job bench_occlusion.py --model "$VIT" --data "$DATA" --limit "$N" --batch-size "$B" "${COMMON[@]}"
job bench_corruptions.py --data "$DATA" --n "$B" --ref-n "$REF_N" --device "$DEVICE" ${ONLY_CORRUPTIONS:+--only "$ONLY_CORRUPTIONS"}
job bench_glass.py --n "$GLASS_N"  # CPU threads: can glass blur's index maps keep up with the GPU?
job bench_fourier.py --model "$CNN" --data "$DATA" --limit "$FOURIER_N" --batch-size "$B" "${COMMON[@]}"
for M in "$CNN" "$VIT"; do
  job bench_pgd.py --model "$M" --batch-size "$B" --steps "$PGD_STEPS" "${COMMON[@]}"
done
job bench_imagenet_c_files.py --model "$CNN" --per-cell "$PER_CELL" --batch-size "$B" "${COMMON[@]}"
# AutoAttack attacks only correctly classified images: the offline pretrained efficientnet-lite0 on the
# real samples when the shared data is there, else on the synthetic images labelled with its own predictions
if [ -d "${RBVIT_DATA:-../shared/data}/imagenet-samples/val" ]; then
  job bench_autoattack.py --model efficientnet_lite0 --limit "$AA_N" --batch-size "$AA_N" --device "$DEVICE" --dtype "$DT"
else
  job bench_autoattack.py --model efficientnet_lite0 --data "$DATA" --relabel --limit "$AA_N" --batch-size "$AA_N" --device "$DEVICE" --dtype "$DT"
fi
# every script in one Python process: torch and timm are imported once
printf '%s\n' "${JOBS[@]}" | (cd benchmarks && "$PY" _run_many.py) 2>&1 \
  | grep -v "^WARNING\|mCE not reported" | tee -a "$LOG"
[ "${PIPESTATUS[1]}" = 0 ] || FAILED+=(benchmarks)
echo "== summary: one line per ratio (device $DEVICE, dtype $DT, batch $B)" | tee -a "$LOG"
SUMMARY=$(grep -E "target|speed-up" "$LOG" | grep -v "^==")
echo "$SUMMARY" | tee -a "$LOG"
# last, as it compiles for a minute or two: does torch.compile / CUDA graphs pay? GPU_CHECK_BUDGET_S (the
# seconds the whole check may take) skips it when under 3 minutes are left
if [ "$QUICK" = 0 ] && [ -n "${GPU_CHECK_BUDGET_S:-}" ] && [ $((GPU_CHECK_BUDGET_S - SECONDS)) -lt 180 ]; then
  echo "== torch.compile vs eager: skipped, ${SECONDS}s of the ${GPU_CHECK_BUDGET_S}s budget spent" | tee -a "$LOG"
elif [ "$QUICK" = 0 ]; then
  echo "== torch.compile vs eager (model-only forward)" | tee -a "$LOG"
  (cd benchmarks && "$PY" bench_compile.py --model "$VIT" --batch-size "$B" "${COMMON[@]}") 2>&1 \
    | grep -v "^W[0-9]" | tee -a "$LOG"
  [ "${PIPESTATUS[0]}" = 0 ] || FAILED+=(bench_compile)
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "== failed: ${FAILED[*]}" | tee -a "$LOG"
  exit 1
fi
