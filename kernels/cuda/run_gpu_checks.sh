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
# Usage: [QSHARD_GPU_SECONDS=S] run_gpu_checks.sh [all|kernels|w8a8|solver|adaround|forward|job|eval]
# (default all: solver with adaround, kernels, job, eval, forward, then the job with aespa). Each program runs under a time
# limit so that one hang cannot eat a short GPU session, and with QSHARD_GPU_SECONDS the whole call
# keeps within S seconds (what does not fit is skipped and named in skipped.txt). Exits 1 if the
# build, a check or a bench fails, else 3 if something was skipped.
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
skipped=()
# QSHARD_GPU_SECONDS (optional): the whole call's budget, e.g. the device tool's timeout_s less a
# minute. Every program's limit is then cut to what is left (less 20 s to pack the results), and a
# program that would get under 30 s is skipped and named in skipped.txt, so that a short GPU session
# still brings back every result it produced, in the order of `all` below.
budget="${QSHARD_GPU_SECONDS:-0}"
# limit_for CAP: CAP seconds, or less when the budget says so; 0: no time left for it.
limit_for() {
  local cap=$1
  if ((budget <= 0)); then echo "$cap"; return; fi
  local left=$((budget - SECONDS - 20))
  if ((left < 30)); then echo 0; elif ((left < cap)); then echo "$left"; else echo "$cap"; fi
}
# run_step NAME LIMIT_SECONDS LOG COMMAND...: runs COMMAND with its output in LOG and on the terminal.
run_step() {
  local name=$1 limit log=$3
  limit=$(limit_for "$2")
  shift 3
  if ((limit == 0)); then skipped+=("$name"); return; fi
  timeout "$limit" "$@" 2>&1 | tee "$log"
  local step_status=${PIPESTATUS[0]}
  if [[ $step_status -ne 0 ]]; then
    echo "run_gpu_checks: $name exited with $step_status (124: over its ${limit} s limit)" >&2
    status=1
  fi
}
# run_bench NAME LIMIT_SECONDS BASENAME COMMAND...: JSON rows to BASENAME.jsonl, the table to BASENAME.txt.
run_bench() {
  local name=$1 limit base=$3
  limit=$(limit_for "$2")
  shift 3
  if ((limit == 0)); then skipped+=("$name"); return; fi
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

# Each part's check, then its benchmark, parts in the order of what the open issues need measured
# first: the solver (issue 18's GPTQ on the device against the authors' PyTorch, and aespa's
# AdaRound), the kernels (issue 16's 3x-cuBLAS target, W8A8), the end-to-end GPTQ job and
# evaluation (from the bundle), the layer forward and aespa's statistics, then aespa's job.
bin="$build_dir/kernels/cuda"
if wants solver; then
  run_step qshard_cuda_solver_check 300 "$results/solver-check.log" "$bin/qshard_cuda_solver_check"
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
if wants solver || [[ $part == adaround ]]; then
  run_step qshard_cuda_adaround_check 120 "$results/adaround-check.log" "$bin/qshard_cuda_adaround_check" --time
fi
if wants kernels; then
  run_step qshard_cuda_check 300 "$results/check.log" "$bin/qshard_cuda_check"
fi
if wants kernels || [[ $part == w8a8 ]]; then
  run_step qshard_cuda_w8a8_check 120 "$results/w8a8-check.log" "$bin/qshard_cuda_w8a8_check"
fi
if wants kernels; then
  run_bench qshard_cuda_bench 300 "$results/bench" "$bin/qshard_cuda_bench"
elif [[ $part == w8a8 ]]; then
  run_bench qshard_cuda_bench 120 "$results/bench" "$bin/qshard_cuda_bench" --only w8a8
fi
if [[ $part == all ]]; then
  if [[ -f build-gpu-bundle/qshard-gpu.tar.xz ]]; then
    run_step run_gpu_job 300 "$results/run-gpu-job.txt" env OUT="$results" kernels/cuda/run_gpu_job.sh
    run_step run_gpu_eval 300 "$results/run-gpu-eval.txt" env OUT="$results" kernels/cuda/run_gpu_eval.sh
  else
    echo "run_gpu_checks: no build-gpu-bundle/qshard-gpu.tar.xz: the end-to-end job and eval did not run"
  fi
fi
if wants forward; then
  run_step qshard_cuda_forward_check 300 "$results/forward-check.log" "$bin/qshard_cuda_forward_check"
  run_step qshard_cuda_attention_stats_check 120 "$results/attention-stats-check.log" \
    "$bin/qshard_cuda_attention_stats_check"
  run_bench qshard_cuda_forward_bench 300 "$results/forward-bench" "$bin/qshard_cuda_forward_bench"
fi
if [[ $part == all && -f build-gpu-bundle/qshard-gpu.tar.xz ]]; then  # aespa end to end, last
  mkdir -p "$results/aespa-job"
  run_step run_gpu_job_aespa 300 "$results/aespa-job/run-gpu-job.txt" \
    env OUT="$results/aespa-job" QSHARD_JOB_METHOD=aespa kernels/cuda/run_gpu_job.sh
fi
if ((${#skipped[@]} > 0)); then
  printf '%s\n' "${skipped[@]}" >"$results/skipped.txt"
  echo "run_gpu_checks: out of time (QSHARD_GPU_SECONDS=$budget), not run: ${skipped[*]} (skipped.txt)"
  ((status == 0)) && status=3
fi
# Everything in one file too: the device tool brings back only a few files per call.
tar -czf "$results.tar.gz" --exclude=all-results.tar.gz -C "$results" . && mv "$results.tar.gz" "$results/all-results.tar.gz"
exit $status
