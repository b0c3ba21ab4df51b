#!/usr/bin/env bash
# gpu_check.sh: check symgrad's CUDA backend on a machine with an NVIDIA GPU (project issue 4).
#
#     bash scripts/gpu_check.sh          # from anywhere; it runs in the repository root
#
# 1. Packages, best effort (SYMGRAD_NO_INSTALL=1 skips this): `pip install -e ".[dev]"`, and CuPy
#    for the driver's CUDA major version (cupy-cuda12x or cupy-cuda13x) when `import cupy`
#    fails. Without network access it goes on with what is installed, running symgrad from the
#    checkout.
# 2. tests/test_cuda.py and tests/test_sparse_cuda.py with SYMGRAD_REQUIRE_GPU=1: the CuPy tests run
#    (the "cupy" backend against the NumPy backend, dense and sparse), and a missing GPU or CuPy
#    fails instead of skipping.
# 3. benchmarks/cuda_step.py at the e-prop paper's scale: one recurrent ALIF layer, batch 256,
#    1024 neurons, 700 inputs, 100 steps, float32, kappa 0.9. It prints ms per e-prop step, the
#    bytes the fused trace kernel moves per step and the bandwidth it achieves, as a fraction of
#    the device's peak (from CuPy's device attributes).
# 4. The rest of the test suite (without the finite-difference checks), in the time left of a
#    280 s budget (SYMGRAD_CHECK_BUDGET, in seconds).
#
# Everything printed is also kept in $OUT/gpu_check/ (./gpu_check_out/ when OUT is unset):
# log.txt, cuda_tests.txt, benchmark.json, suite.txt. Exit status: 0 when steps 2 and 3 pass.
# It takes under 5 minutes on an H100/H200-class GPU.
set -uo pipefail

cd "$(dirname "$0")/.."
DEST="${OUT:-$PWD/gpu_check_out}/gpu_check"
mkdir -p "$DEST"
START=$SECONDS
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # symgrad from this checkout, installed or not
export SYMGRAD_CACHE="${SYMGRAD_CACHE:-$DEST/cache}"

step() { echo; echo "== $* ($((SECONDS - START)) s)"; }

main() {
step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"
"$PY" --version

if [ "${SYMGRAD_NO_INSTALL:-0}" != "1" ]; then
    step "packages (best effort)"
    PIP=("$PY" -m pip install --quiet --disable-pip-version-check --retries 0 --timeout 10)
    timeout 90 "${PIP[@]}" -e ".[dev]" || echo "pip install -e .[dev] failed: going on with what is installed"
    if ! "$PY" -c "import cupy" 2>/dev/null; then
        CUDA_MAJOR=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -1)
        timeout 90 "${PIP[@]}" "cupy-cuda${CUDA_MAJOR:-12}x" || echo "installing CuPy failed"
    fi
fi
"$PY" - <<'EOF'
import importlib
for name in ("numpy", "sympy", "jinja2", "pytest", "cupy"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as err:
        print(f"{name}: not usable ({type(err).__name__}: {err})")
try:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"GPU 0: {name}, compute capability {props['major']}.{props['minor']}, "
          f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, NVRTC {cupy.cuda.nvrtc.getVersion()}")
except Exception as err:
    print(f"CuPy cannot use a GPU here: {type(err).__name__}: {err}")
EOF

status=0
step "CUDA tests, CuPy included (tests/test_cuda.py, tests/test_sparse_cuda.py)"
SYMGRAD_REQUIRE_GPU=1 timeout 180 "$PY" -m pytest tests/test_cuda.py tests/test_sparse_cuda.py -q -rs -p no:cacheprovider \
    2>&1 | tee "$DEST/cuda_tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "CUDA TESTS FAILED"; status=1; }

step "benchmark at the paper's scale (benchmarks/cuda_step.py)"
timeout 120 "$PY" -m benchmarks.cuda_step --backend cupy --json "$DEST/benchmark.json" \
    || { echo "BENCHMARK FAILED"; status=1; }

LEFT=$((${SYMGRAD_CHECK_BUDGET:-280} - (SECONDS - START)))
if [ "$LEFT" -gt 30 ]; then
    step "the rest of the test suite (${LEFT} s at most)"
    timeout "$LEFT" "$PY" -m pytest tests -q -x -k "not finite" --ignore=tests/test_cuda.py --ignore=tests/test_sparse_cuda.py \
        -p no:cacheprovider 2>&1 | tail -25 | tee "$DEST/suite.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || echo "the rest of the suite failed or ran out of time (see suite.txt)"
else
    step "no time left for the rest of the test suite"
fi

step "done: status $status; logs in $DEST"
return $status
}

main 2>&1 | tee "$DEST/log.txt"
exit "${PIPESTATUS[0]}"
