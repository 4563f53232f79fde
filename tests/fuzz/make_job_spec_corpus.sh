#!/usr/bin/env bash
# Writes the seed corpus for job_spec_fuzz into corpus/job_spec/: wire JobSpecs encoded with
# protoc from the text-format seeds below (valid specs of each method and shape, and specs
# that each break one rule). Run from this folder.
set -euo pipefail
out=corpus/job_spec
mkdir -p "$out"
seed() {  # seed NAME TEXT_PROTO
  protoc --proto_path=../../proto --encode=qshard.v1.JobSpec ../../proto/qshard.proto <<<"$2" >"$out/$1.pb"
}
paths='model_path: "/srv/models/m" output_path: "/srv/out/o"'
calib='text_path: "/srv/data/c.txt" nsamples: 4 seqlen: 64 shards: 4'
job() {  # job NAME QUANT [MORE CALIBRATION] [MORE FIELDS]
  seed "$1" "$paths quant { $2 } calibration { $calib ${3:-} } ${4:-}"
}
job gptq 'method: "gptq" bits: 4 group_size: 32'
job gptq_act_order 'method: "gptq" bits: 3 group_size: 128 act_order: true static_groups: true sym: true damp: 0.05 block_size: 64'
job gptq_per_channel 'method: "gptq" bits: 8 group_size: -1 mse_clip: true'
job zfold 'method: "zfold" bits: 2 group_size: 64 zfold_max_iters: 5'
job aespa 'method: "aespa" bits: 4 group_size: 32 aespa_adaround_iters: 20 aespa_learning_rate: 0.01'
job aespa_no_adaround 'method: "aespa" bits: 4 group_size: 32 aespa_adaround_iters: 0'
seed rtn 'model_path: "/m" output_path: "/o" quant { method: "rtn" bits: 4 group_size: 32 }'
job skip_and_validation 'method: "gptq" bits: 4 group_size: 32 skip: "mlp.down_proj" skip: "self_attn.*"' '' \
  'validation { text_path: "/srv/data/v.txt" first_line: 3 last_line: 90 seqlen: 128 max_windows: 2 }'
job parallel_lines 'method: "gptq" bits: 4 group_size: -1' 'propagation: PROPAGATION_PARALLEL first_line: 2 last_line: 40 seed: 7' \
  'execution { threads: 2 batch_windows: 3 max_shard_bytes: 1048576 } client_request_id: "release-1"'
job bad_bits_0 'method: "gptq" bits: 0'
job bad_bits_9 'method: "gptq" bits: 9'
job bad_method 'method: "nope" bits: 4'
job bad_group 'method: "gptq" bits: 4 group_size: -7'
job bad_lines 'method: "gptq" bits: 4 group_size: 32' 'first_line: 9 last_line: 3'
seed bad_counts "$paths quant { method: \"gptq\" bits: 4 group_size: 32 } calibration { nsamples: -1 shards: -2 seqlen: -5 } execution { threads: -1 }"
seed no_paths 'quant { method: "gptq" bits: 4 }'
printf '\x3a\x02\x38\x07' >"$out/bad_propagation.pb"  # calibration { propagation: 7 }, unknown to the enum
ls "$out" | wc -l
