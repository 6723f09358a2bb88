#!/usr/bin/env bash
# The one GPU check (issue 15): every speed ratio rbvit promises, measured against the model-only
# forward or the reference implementation in the same run, then the GPU tests (pytest -m gpu).
# Needs only `pip install -e .[dev]`: timm random weights, synthetic JPEG files, no downloads.
#
#   benchmarks/gpu_check.sh                      # H200-sized: resnet50 + ViT-B/16, bf16, batch 256 (< 8 min)
#   benchmarks/gpu_check.sh --device cpu --quick # the same script on tiny models (CI runs this)
#
# Prints each benchmark's lines as it runs, then one summary line per ratio ("target" lines).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (use --device DEV, --quick)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export RBVIT_CACHE="$WORK/cache"
LOG="$WORK/log"

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

"$PY" benchmarks/make_synthetic.py "$WORK/data" --n "$N" >/dev/null
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
# AutoAttack needs correctly classified images: the offline pretrained efficientnet-lite0 on real samples
# when the shared data is there (random weights classify nothing, so no stage would run)
if [ -d "${RBVIT_DATA:-../shared/data}/imagenet-samples/val" ]; then
  job bench_autoattack.py --model efficientnet_lite0 --limit "$AA_N" --batch-size "$AA_N" --device "$DEVICE" --dtype "$DT"
else
  echo "== AutoAttack vs the package: skipped (needs ../shared/data/imagenet-samples or RBVIT_DATA)"
fi
# every script in one Python process: torch and timm are imported once
printf '%s\n' "${JOBS[@]}" | (cd benchmarks && "$PY" _run_many.py) 2>&1 \
  | grep -v "^WARNING\|mCE not reported" | tee -a "$LOG"
echo "== summary: one line per ratio (device $DEVICE, dtype $DT, batch $B)"
grep -E "target|speed-up" "$LOG" | grep -v "^==" || true
if [ -z "${GPU_CHECK_NO_PYTEST:-}" ]; then  # set by the test that runs this script inside pytest
  echo "== pytest -m gpu"
  "$PY" -m pytest -q -m gpu -p no:cacheprovider
fi
if [ "$QUICK" = 0 ]; then  # last, as it compiles for a minute or two: does torch.compile / CUDA graphs pay?
  echo "== torch.compile vs eager (model-only forward)"
  (cd benchmarks && "$PY" bench_compile.py --model "$VIT" --batch-size "$B" "${COMMON[@]}") 2>&1 | grep -v "^W[0-9]"
fi
