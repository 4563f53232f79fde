#!/usr/bin/env bash
# End to end on a GPU machine, with the full qshard program carried from a CUDA build here
# (scripts/pack-gpu-bundle; carry build-gpu-bundle): the TinyStories-656K GPTQ W4 g32 job of
# docs/results.md (128 windows of 512 tokens from WikiText-2 test lines 1-2179), seeds 0-2,
# with --device cpu and --device cuda, each validated against the fp32 model on the first 64
# windows of 512 of lines 2180-4358; then seed 0 on cuda once more, whose checkpoint must have
# the same bytes. Prints the mean KL of each device and their ratio (issue 18: the GPU within
# 1 % of the CPU). Results in $OUT (else build-gpu-bundle/results): job-summary.txt,
# job-rows.jsonl (one quantize --json result per run), job.log (library check, every run's stderr).
# QSHARD_JOB_METHOD=zfold (or aespa) runs the same comparison with Z-Fold (on cuda: calibration on
# the device, aespa's attention statistics included; the ζ search and folds on the CPU, the GPTQ
# solves and aespa's AdaRound on the device; docs/cuda.md, "What runs where"). The summary prints each
# device's device_roles, so an aespa run shows its AdaRound's place ("rounding": "cuda").
# QSHARD_JOB_DEVICE_MEMORY=BYTES makes the second seed-0 cuda run `--device-memory BYTES`
# (docs/cuda.md, "A cap on the device memory"): below an aespa layer's bound its attention
# statistics and AdaRound run in slices of heads, which must leave the bytes as they are.
# Exits 1 if a run fails, the bytes differ or the KL is off by more than 1 %; 2 if the program or
# its CUDA plugin cannot be loaded (a library the machine lacks: job.log lists it).
set -uo pipefail
cd "$(dirname "$0")/../.."

source kernels/cuda/gpu_bundle.sh job  # sets results, log, q, plugin, data, work; exits 2 if it cannot

method="${QSHARD_JOB_METHOD:-gptq}"
echo "method: $method" | tee -a "$log"
status=0
: >"$results/job-rows.jsonl"
# run DEVICE SEED NAME [FLAG...]: one quantize, its JSON result appended to job-rows.jsonl.
run() {
  local device=$1 seed=$2 name=$3
  shift 3
  echo "== $name: --device $device --seed $seed $*" >>"$log"
  if timeout 300 "$q" quantize --model "$data/tinystories-656k" --out "$work/out/$name" --method "$method" --bits 4 \
      --group-size 32 --calib-text "$data/wiki.test.raw" --calib-lines 1-2179 --nsamples 128 --seqlen 512 \
      --seed "$seed" --device "$device" --validate-text "$data/wiki.test.raw" --validate-lines 2180-4358 \
      --validate-seqlen 512 --validate-windows 64 "$@" --json >"$work/$name.json" 2>>"$log"; then
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["run"]=sys.argv[2]; r["seed"]=int(sys.argv[3]); print(json.dumps(r))' \
      "$work/$name.json" "$name" "$seed" >>"$results/job-rows.jsonl"
  else
    echo "run_gpu_job: $name failed (job.log)" | tee -a "$log"
    status=1
  fi
}
for seed in 0 1 2; do
  run cpu "$seed" "cpu-$seed"
  run cuda "$seed" "cuda-$seed"
done
run cuda 0 cuda-0-again ${QSHARD_JOB_DEVICE_MEMORY:+--device-memory "$QSHARD_JOB_DEVICE_MEMORY"}

python3 - "$results/job-rows.jsonl" "$work/out" >"$results/job-summary.txt" <<'PY' || status=1
import hashlib, json, os, sys
rows = {r["run"]: r for r in map(json.loads, open(sys.argv[1]))}
def digest(run):
    path = os.path.join(sys.argv[2], run, "model.safetensors")
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:16] if os.path.exists(path) else "missing"
ok = True
means = {}
for device in ("cpu", "cuda"):
    kls = [rows[f"{device}-{s}"]["validation"]["kl_divergence"] for s in range(3) if f"{device}-{s}" in rows]
    top1 = [rows[f"{device}-{s}"]["validation"]["top1_agreement"] for s in range(3) if f"{device}-{s}" in rows]
    solve = [rows[f"{device}-{s}"]["summary"]["seconds_solve"] for s in range(3) if f"{device}-{s}" in rows]
    # calibration and propagation: the forward passes (on the device with --device cuda)
    forward = [{k: v for k, v in rows[f"{device}-{s}"]["summary"]["seconds_by_phase"].items()
                if k in ("calibration", "propagation")} for s in range(3) if f"{device}-{s}" in rows]
    print(f"{device}: KL per seed {kls}, top-1 {top1}, solve s {solve}, forward phases s {forward}")
    if f"{device}-0" in rows:
        print(f"{device}: device_roles {json.dumps(rows[f'{device}-0'].get('device_roles'))}")
    if len(kls) == 3:
        means[device] = sum(kls) / 3
        print(f"{device}: mean KL {means[device]:.6f}, mean top-1 {sum(top1) / 3:.4f}")
    else:
        ok = False
if len(means) == 2:
    ratio = means["cuda"] / means["cpu"]
    print(f"cuda/cpu mean KL ratio {ratio:.5f} ({'within' if abs(ratio - 1) <= 0.01 else 'NOT within'} 1 %)")
    ok &= abs(ratio - 1) <= 0.01
for s in range(3):
    print(f"seed {s}: checkpoint sha256 cpu {digest(f'cpu-{s}')}, cuda {digest(f'cuda-{s}')}")
again = digest("cuda-0-again")
same = again == digest("cuda-0") and again != "missing"
budget = os.environ.get("QSHARD_JOB_DEVICE_MEMORY")
print(f"cuda seed 0 run twice{f' (again under --device-memory {budget})' if budget else ''}: "
      f"{'identical' if same else 'DIFFERENT'} bytes ({again})")
ok &= same
print("run_gpu_job:", "passed" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
cat "$results/job-summary.txt"
exit $status
