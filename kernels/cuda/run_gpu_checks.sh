#!/usr/bin/env bash
# The one script to run on a GPU machine: builds only the CUDA kernels (-DQSHARD_CUDA_ONLY=ON,
# which needs just the CUDA toolkit, CMake >= 3.25 and a host C++ compiler; no network), then
# runs the correctness check and the benchmark. Results go to $OUT if set, else
# build-cuda/results: nvidia-smi.txt, build.log, check.log, bench.jsonl (one JSON object per
# row) and bench.txt (the table). Exits non-zero if the build, the check or the bench fails.
set -uo pipefail
cd "$(dirname "$0")/../.."

build_dir=build-cuda
results="${OUT:-$build_dir/results}"
mkdir -p "$results"

generator="Unix Makefiles"
if command -v ninja >/dev/null 2>&1; then generator=Ninja; fi
nvcc_path="$(command -v nvcc || true)"
if [[ -z "$nvcc_path" && -x /usr/local/cuda/bin/nvcc ]]; then nvcc_path=/usr/local/cuda/bin/nvcc; fi
if [[ -z "$nvcc_path" ]]; then
  echo "run_gpu_checks: no nvcc on PATH or in /usr/local/cuda/bin" >&2
  exit 1
fi

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; } \
  >"$results/nvidia-smi.txt" 2>&1
cat "$results/nvidia-smi.txt"
echo "$(cmake --version | head -n 1); nvcc: $("$nvcc_path" --version | tail -n 1); generator: $generator"

if ! { cmake -S . -B "$build_dir" -G "$generator" -DQSHARD_CUDA_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
         -DCMAKE_CUDA_COMPILER="$nvcc_path" &&
       cmake --build "$build_dir" -j "$(nproc)"; } >"$results/build.log" 2>&1; then
  tail -n 60 "$results/build.log"
  echo "run_gpu_checks: build failed (full log: $results/build.log)" >&2
  exit 1
fi
echo "build: ok"

status=0
"$build_dir/kernels/cuda/qshard_cuda_check" 2>&1 | tee "$results/check.log"
check_status=${PIPESTATUS[0]}
if [[ $check_status -ne 0 ]]; then
  echo "run_gpu_checks: qshard_cuda_check exited with $check_status" >&2
  status=1
fi

"$build_dir/kernels/cuda/qshard_cuda_bench" --json >"$results/bench.jsonl" 2>"$results/bench.txt"
bench_status=$?
cat "$results/bench.txt"
if [[ $bench_status -ne 0 ]]; then
  echo "run_gpu_checks: qshard_cuda_bench exited with $bench_status" >&2
  status=1
fi
exit $status
