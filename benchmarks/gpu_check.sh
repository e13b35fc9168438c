#!/usr/bin/env bash
# The CUDA check, on one GPU in under 8 minutes, every result written under $OUT as it goes:
#   1. versions.txt  the GPU, driver, Python, torch, CUDA and cuDNN, the CPU
#   2. the test suite on CUDA (no -x): failures.log gets each failure's name and traceback the moment
#      it happens (tests/conftest.py), so a lease that ends mid-suite still returns them; tests.log,
#      junit.xml. Tests marked `cuda` (tests/test_cuda.py) run here and skip on a CPU.
#   3. the GPU part of the benchmark suite (benchmarks/suite.py on CUDA): the mlp and conv-fashion
#      steady-state epoch in fp32 and bf16 against the tutorial loop, each step against the launch
#      floor and a CUDA graph, time to the tutorial's 10-epoch quality, best-binarized per epoch:
#      bench.log, results_gpu.json.
#
#   OUT=/tmp/gpu benchmarks/gpu_check.sh            on a machine with a GPU
#   OUT=/tmp/gpu benchmarks/gpu_check.sh --dry-run  anywhere: the same steps with a few tests and a short bench
#
# Data: Fashion-MNIST (and MNIST for best-binarized) from $VAEKIT_DATA/fashion-mnist and /mnist; as
# root, Fashion-MNIST is also copied to Debian's place, where the tests look for it.
# Knobs: PYTHON (python3), WORKERS (pytest-xdist processes, 8), TEST_SECONDS (200), BENCH_SECONDS (210).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder the logs go to}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

debian=/usr/share/datasets/fashion-mnist
if [ -n "${VAEKIT_DATA:-}" ] && [ -d "$VAEKIT_DATA/fashion-mnist" ] && [ ! -e "$debian" ] && [ -w /usr/share ]; then
    mkdir -p "$debian" && cp "$VAEKIT_DATA"/fashion-mnist/*.gz "$debian"/
fi

echo "== 1. versions" | tee "$OUT/versions.txt"
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi: not here"
    "$PY" - <<'PY'
import os, platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU 0: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
else:
    print("GPU: none (torch sees no CUDA device)")
print(f"CPU cores: {os.cpu_count()}")
PY
    grep -m1 "model name" /proc/cpuinfo
} 2>&1 | tee -a "$OUT/versions.txt"

echo "== 2. tests" | tee "$OUT/tests.log"
plugins=()
"$PY" -c "import xdist" 2>/dev/null && plugins+=(-n "${WORKERS:-8}")
"$PY" -c "import pytest_timeout" 2>/dev/null && plugins+=(--timeout 200)
selection=()
[ "$DRY" = 1 ] && selection=(tests/test_cuda.py tests/test_distributed.py -k "cuda or shards")
: >"$OUT/failures.log"
# two threads per worker: eight workers with a thread per core each would oversubscribe the CPU
OMP_NUM_THREADS=2 VAEKIT_FAILURE_LOG="$OUT/failures.log" timeout -k 10 "${TEST_SECONDS:-200}" "$PY" -m pytest -p no:cacheprovider \
    -q -rfEs --durations=20 --junitxml="$OUT/junit.xml" "${plugins[@]}" "${selection[@]}" 2>&1 | tee -a "$OUT/tests.log"
echo "tests exit code: ${PIPESTATUS[0]} (124: stopped at TEST_SECONDS)" | tee -a "$OUT/tests.log"

echo "== 3. benchmarks" | tee "$OUT/bench.log"
bench=("$PY" benchmarks/suite.py --out "$OUT/results_gpu.json")
if [ "$DRY" = 1 ]; then
    steps=("${bench[*]} --only throughput --models mlp --repeats 1")
else  # the figures that matter most first: a lease that ends early keeps what each step wrote
    steps=("${bench[*]} --only throughput launch --repeats 2" "${bench[*]} --only target binarized --repeats 1")
fi
deadline=$((SECONDS + ${BENCH_SECONDS:-210}))
for step in "${steps[@]}"; do
    left=$((deadline - SECONDS))
    [ "$left" -le 5 ] && { echo "no time left for: $step" | tee -a "$OUT/bench.log"; break; }
    timeout -k 10 "$left" $step 2>&1 | tee -a "$OUT/bench.log"
    echo "exit code ${PIPESTATUS[0]}: $step" | tee -a "$OUT/bench.log"
done
ls -l "$OUT"
