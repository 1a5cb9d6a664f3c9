#!/usr/bin/env bash
# One-call GPU check for issue 7 (about 8 minutes on an H100/H200 with 16 cores):
#   1. configure and build hepinfer with HEPINFER_CUDA=ON (Python module + C++ tests),
#   2. run the C++ tests (host-side kernel logic included) and tests/gpu with the GPU visible,
#   3. run benchmarks/gpu.py --quick, writing JSON to $OUT (or benchmarks/results/).
# usage: benchmarks/gpu_check.sh [build-dir]     (run from the repository root)
# Exit status: non-zero when the build or a test fails; the benchmark's status otherwise.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-gpu}
out=${OUT:-$root/benchmarks/results}
mkdir -p "$out"
jobs=$(nproc 2>/dev/null || echo 8)
log() { echo "=== $(date -u +%H:%M:%S) $*"; }

log "GPU"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
log "configure"
pyb=$(python -c "import pybind11; print(pybind11.get_cmake_dir())") || { echo "pybind11 missing"; exit 1; }
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHEPINFER_CUDA=ON -DHEPINFER_PYTHON=ON \
  -DHEPINFER_BUILD_TESTS=ON -Dpybind11_DIR="$pyb" > "$out/gpu_configure.log" 2>&1 \
  || { tail -30 "$out/gpu_configure.log"; exit 1; }
log "build ($jobs jobs)"
cmake --build "$build" --parallel "$jobs" > "$out/gpu_build.log" 2>&1 || { tail -40 "$out/gpu_build.log"; exit 1; }

# a site dir with the fresh module next to the checkout's Python sources
site="$build/site"
mkdir -p "$site/hepinfer"
for f in "$root"/python/hepinfer/*; do
  b=$(basename "$f")
  [ "$b" = "__init__.py" ] && cp "$f" "$site/hepinfer/$b" || ln -sfn "$f" "$site/hepinfer/$b"
done
find "$build" -name "_core*.so" -exec cp {} "$site/hepinfer/" \;
find "$build" -name "libhepinfer_shared*.so" -exec cp {} "$site/hepinfer/" \; 2>/dev/null
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
python -c "import hepinfer, hepinfer._core as c; print('built_with_cuda', c.built_with_cuda(), 'devices', c.cuda_device_count())"

status=0
log "ctest"
(cd "$build" && ctest --output-on-failure -j 4 > "$out/gpu_ctest.log" 2>&1) || { status=1; tail -40 "$out/gpu_ctest.log"; }
tail -3 "$out/gpu_ctest.log"
log "pytest tests/gpu"
python -m pytest -q -ra "$root/tests/gpu" -p no:cacheprovider --junitxml="$out/gpu_pytest.xml" 2>&1 | tee "$out/gpu_pytest.log" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if grep -q "SKIPPED" "$out/gpu_pytest.log"; then echo "note: some GPU tests were skipped (see the reasons above)"; fi
log "benchmark (quick)"
timeout 300 python "$root/benchmarks/gpu.py" --quick --json "$out/gpu_quick.json" 2>&1 | tee "$out/gpu_bench.log" | tail -20
bench=${PIPESTATUS[0]}
log "done: tests status $status, benchmark status $bench"
[ $status -eq 0 ] || exit $status
exit $bench
