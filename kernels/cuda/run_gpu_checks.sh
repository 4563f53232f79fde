#!/usr/bin/env bash
# The one script to run on a GPU machine: builds only the CUDA kernels (-DQSHARD_CUDA_ONLY=ON,
# which needs just the CUDA toolkit, CMake >= 3.25 and a host C++ compiler; no network), then
# runs the correctness checks and the benchmarks. Results go to $OUT if set, else
# build-cuda/results: nvidia-smi.txt, build.log, then per part
#   kernels: check.log, w8a8-check.log, bench.jsonl (one JSON object per row), bench.txt (the table)
#   w8a8:    w8a8-check.log, bench.jsonl, bench.txt: only the W8A8 check and benchmark rows (a
#            subset of kernels, for a short session)
#   solver:  solver-check.log, solver-bench.jsonl, solver-bench.txt, and the PyTorch GPTQ
#            baseline on the same GPU (gptq_torch_cuda_bench.py) in torch-bench.jsonl/.txt; and
#            adaround's
#   adaround: adaround-check.log: aespa's AdaRound on the device against its host reference, then
#            its time per linear at OPT-1.3B's and OPT-13B's shapes (--time; about half a minute)
#   job:     the whole program on the device (run_gpu_job.sh: TinyStories GPTQ --device cpu
#            against --device cuda), from a bundle built and packed on a CUDA build machine
#            (scripts/pack-gpu-bundle) and carried here; part of `all` only when the bundle is there
#   forward: forward-check.log, forward-bench.jsonl, forward-bench.txt (the decoder layer), and
#            attention-stats-check.log (aespa's attention statistics on the device)
#   eval:    `qshard eval --device cuda` against --device cpu with each --kernels (run_gpu_eval.sh),
#            from the same bundle as job; part of `all` only when the bundle is there
# and all of them packed in all-results.tar.gz.
# Usage: run_gpu_checks.sh [all|kernels|w8a8|solver|adaround|forward|job|eval] (default all: kernels first). Each program
# runs under a time limit so that one hang cannot eat a short GPU session. Exits non-zero if the
# build, a check or a bench fails.
set -uo pipefail
cd "$(dirname "$0")/../.."

part="${1:-all}"
run_job() { OUT="${OUT:-build-gpu-bundle/results}" kernels/cuda/run_gpu_job.sh; }
run_eval() { OUT="${OUT:-build-gpu-bundle/results}" kernels/cuda/run_gpu_eval.sh; }
if [[ $part == job ]]; then
  run_job
  exit $?
fi
if [[ $part == eval ]]; then
  run_eval
  exit $?
fi
case "$part" in
  all) targets=() ;;  # everything
  kernels) targets=(--target qshard_cuda_check qshard_cuda_w8a8_check qshard_cuda_bench) ;;
  w8a8) targets=(--target qshard_cuda_w8a8_check qshard_cuda_bench) ;;
  solver) targets=(--target qshard_cuda_solver_check qshard_cuda_solver_bench qshard_cuda_adaround_check) ;;
  adaround) targets=(--target qshard_cuda_adaround_check) ;;
  forward) targets=(--target qshard_cuda_forward_check qshard_cuda_forward_bench qshard_cuda_attention_stats_check) ;;
  *) echo "usage: $0 [all|kernels|w8a8|solver|adaround|forward|job|eval]" >&2; exit 2 ;;
esac

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
       cmake --build "$build_dir" -j "$(nproc)" "${targets[@]}"; } >"$results/build.log" 2>&1; then
  tail -n 60 "$results/build.log"
  echo "run_gpu_checks: build failed (full log: $results/build.log)" >&2
  exit 1
fi
echo "build: ok"

status=0
# run_step NAME LIMIT_SECONDS LOG COMMAND...: runs COMMAND with its output in LOG and on the terminal.
run_step() {
  local name=$1 limit=$2 log=$3
  shift 3
  timeout "$limit" "$@" 2>&1 | tee "$log"
  local step_status=${PIPESTATUS[0]}
  if [[ $step_status -ne 0 ]]; then
    echo "run_gpu_checks: $name exited with $step_status (124: over its ${limit} s limit)" >&2
    status=1
  fi
}
# run_bench NAME LIMIT_SECONDS BASENAME COMMAND...: JSON rows to BASENAME.jsonl, the table to BASENAME.txt.
run_bench() {
  local name=$1 limit=$2 base=$3
  shift 3
  timeout "$limit" "$@" --json >"$base.jsonl" 2>"$base.txt"
  local bench_status=$?
  cat "$base.txt"
  if [[ $bench_status -ne 0 ]]; then
    echo "run_gpu_checks: $name exited with $bench_status (124: over its ${limit} s limit)" >&2
    status=1
  fi
}

# wants PART: whether this run includes PART.
wants() { [[ $part == all || $part == "$1" ]]; }

bin="$build_dir/kernels/cuda"
if wants kernels; then
  run_step qshard_cuda_check 300 "$results/check.log" "$bin/qshard_cuda_check"
fi
if wants kernels || [[ $part == w8a8 ]]; then
  run_step qshard_cuda_w8a8_check 120 "$results/w8a8-check.log" "$bin/qshard_cuda_w8a8_check"
fi
if wants solver; then
  run_step qshard_cuda_solver_check 300 "$results/solver-check.log" "$bin/qshard_cuda_solver_check"
fi
if wants solver || [[ $part == adaround ]]; then
  run_step qshard_cuda_adaround_check 120 "$results/adaround-check.log" "$bin/qshard_cuda_adaround_check" --time
fi
if wants forward; then
  run_step qshard_cuda_forward_check 300 "$results/forward-check.log" "$bin/qshard_cuda_forward_check"
  run_step qshard_cuda_attention_stats_check 120 "$results/attention-stats-check.log" \
    "$bin/qshard_cuda_attention_stats_check"
fi
if wants kernels; then
  run_bench qshard_cuda_bench 300 "$results/bench" "$bin/qshard_cuda_bench"
elif [[ $part == w8a8 ]]; then
  run_bench qshard_cuda_bench 120 "$results/bench" "$bin/qshard_cuda_bench" --only w8a8
fi
if wants forward; then
  run_bench qshard_cuda_forward_bench 300 "$results/forward-bench" "$bin/qshard_cuda_forward_bench"
fi
if wants solver; then
  run_bench qshard_cuda_solver_bench 300 "$results/solver-bench" "$bin/qshard_cuda_solver_bench"
  # The PyTorch baseline on the same GPU, where a Python with torch is installed.
  torch_python=""
  for python in python3 /usr/bin/python3; do
    if command -v "$python" >/dev/null 2>&1 && "$python" -c "import torch" >/dev/null 2>&1; then
      torch_python=$python
      break
    fi
  done
  if [[ -n $torch_python ]]; then
    run_bench gptq_torch_cuda_bench 300 "$results/torch-bench" "$torch_python" kernels/cuda/gptq_torch_cuda_bench.py
  else
    echo "run_gpu_checks: no Python with torch; the PyTorch baseline did not run" | tee "$results/torch-bench.txt"
  fi
fi
if [[ $part == all ]]; then
  if [[ -f build-gpu-bundle/qshard-gpu.tar.xz ]]; then
    run_job || status=1
    run_eval || status=1
  else
    echo "run_gpu_checks: no build-gpu-bundle/qshard-gpu.tar.xz: the end-to-end job and eval did not run"
  fi
fi
# Everything in one file too: the device tool brings back only a few files per call.
tar -czf "$results.tar.gz" --exclude=all-results.tar.gz -C "$results" . && mv "$results.tar.gz" "$results/all-results.tar.gz"
exit $status
