#include "tools/qshard/job_flags.h"

#include "core/status.h"
#include "worker/methods/method_registry.h"

namespace qshard::cli {

void AddJobFlags(CLI::App& app, JobFlags& flags) {
  JobSpec& s = flags.spec;
  QuantSpec& q = s.method.spec;
  CalibrationSpec& c = s.calibration;
  app.add_option("--model", s.model_dir, "Hugging Face model directory")->required();
  app.add_option("--out", s.out_dir, "Output directory (created when missing)")->required();
  app.add_option("--method", s.method.method, KnownMethodNames())->capture_default_str();
  app.add_option("--bits", q.bits, "Weight bits: 2, 3, 4 or 8")->capture_default_str();
  app.add_option("--group-size", q.group_size, "Input columns per group; -1 = per output channel")->capture_default_str();
  app.add_flag("--sym", q.sym, "Symmetric grids (default asymmetric)");
  app.add_flag("--act-order", q.act_order, "GPTQ: quantize columns by descending diag(H)");
  app.add_flag("--static-groups", q.static_groups, "GPTQ: fix groups before reordering");
  app.add_flag("--mse", q.mse_clip, "Clipping search (GPTQ's --mse) for the grids");
  app.add_option("--damp", q.damp, "Dampening, a fraction of mean(diag H)")->capture_default_str();
  app.add_option("--block-size", q.block_size, "GPTQ lazy-batch block width")->capture_default_str();
  app.add_option("--calib-text", c.text, "Calibration text file");
  app.add_option("--calib-lines", flags.calib_lines, "Lines of the calibration text, FIRST-LAST (default all)");
  app.add_option("--nsamples", c.nsamples, "Calibration windows")->capture_default_str();
  app.add_option("--seqlen", c.seqlen, "Tokens per window (default min(2048, max positions))");
  app.add_option("--seed", c.seed, "Seed of the window sampling")->capture_default_str();
  app.add_option("--calib-shards", c.shards, "Calibration shards: statistics are summed per shard, then across")
      ->capture_default_str();
  app.add_option("--propagation", flags.propagation, "sequential | parallel")->capture_default_str();
  app.add_option("--skip", s.skip, "Linears to keep in full precision (glob over names like mlp.down_proj)");
  app.add_option("--threads", s.execution.threads, "Threads (0 = all)")->capture_default_str();
  app.add_option("--batch-windows", s.execution.batch_windows, "Calibration windows per forward batch (0 = as many as fit 512 MiB of activations, at most 64)")
      ->capture_default_str();
  app.add_option("--zfold-iters", s.method.zfold_max_iters, "Z-Fold/aespa: most alternations")->capture_default_str();
  app.add_option("--aespa-adaround-iters", s.method.aespa_adaround_iters,
                 "aespa: AdaRound iterations (0 = without AdaRound)")->capture_default_str();
  app.add_option("--flatten-threshold", s.method.flatten_threshold,
                 "flattenquant: split input channels above this max |x|: off | auto | a number")
      ->capture_default_str();
  app.add_option("--int4-max-error", s.method.flatten_int4_max_error,
                 "flattenquant --bits 4: W4A4 where the estimated relative output error is at most this")
      ->capture_default_str();
  app.add_option("--max-shard-bytes", s.execution.max_shard_bytes, "Largest safetensors shard")->capture_default_str();
  ValidationSpec& v = s.validation;
  app.add_option("--validate-text", v.text,
                 "After quantizing, perplexity/KL/top-1 against the base model on this text, through the kernels");
  app.add_option("--validate-lines", flags.validate_lines, "Lines of the validation text, FIRST-LAST (default all)");
  app.add_option("--validate-seqlen", v.seqlen, "Tokens per validation window")->capture_default_str();
  app.add_option("--validate-windows", v.max_windows, "Validation windows (0 = all)")->capture_default_str();
}

absl::StatusOr<JobSpec> JobSpecOfFlags(const JobFlags& flags) {
  JobSpec spec = flags.spec;
  QSHARD_ASSIGN_OR_RETURN(spec.calibration.lines, ParseLineRange(flags.calib_lines, "--calib-lines"));
  QSHARD_ASSIGN_OR_RETURN(spec.calibration.propagation, ParsePropagation(flags.propagation));
  QSHARD_ASSIGN_OR_RETURN(spec.validation.lines, ParseLineRange(flags.validate_lines, "--validate-lines"));
  return spec;
}

}  // namespace qshard::cli
