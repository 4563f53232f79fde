// Test helper for the job tests: small jobs on the real TinyStories-656K model calibrated on
// the first half of WikiText-2 test, and their judgement against the fp32 model on the second.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/job_runner.h"
#include "engine/model_loading.h"
#include "core/tokenizer/text_tokens.h"
#include "engine/job_spec.h"
#include "gtest/gtest.h"
#include "worker/eval/evaluate.h"

namespace qshard::tiny_jobs {

inline constexpr char kModel[] = "../shared/data/tinystories-656k";
inline constexpr char kText[] = "../shared/data/wikitext-2-raw/wiki.test.raw";

// `nsamples` windows of `seqlen` tokens, 4 shards, 2 threads, per-channel grids.
inline JobSpec Job(const std::string& method, int bits, const std::string& out, int64_t nsamples, int64_t seqlen) {
  JobSpec spec;
  spec.model_dir = kModel;
  spec.out_dir = out;
  spec.method.method = method;
  spec.method.spec.bits = bits;
  spec.calibration.text = kText;
  spec.calibration.lines = {1, 2179};
  spec.calibration.nsamples = nsamples;
  spec.calibration.seqlen = seqlen;
  spec.calibration.shards = 4;
  spec.execution.threads = 2;
  return spec;
}

// A job's steps as JobEvents::module_started reports them, one "layer phase linears" line each.
inline std::string StepLine(const ModuleProgress& m) {
  static const char* const kPhases[] = {"calibrating", "solving", "propagating", "restoring", "writing", "validating"};
  return absl::StrCat(m.layer, "/", m.layers, " ", kPhases[static_cast<int>(m.phase)], " ", absl::StrJoin(m.linears, ","));
}
inline void RecordSteps(JobEvents& events, std::vector<std::string>& steps) {
  events.module_started = [&steps](const ModuleProgress& m) { steps.push_back(StepLine(m)); };
}

// Perplexity, KL and agreement of `dir` against the fp32 model on `windows` held-out windows of 512.
inline EvalResult EvaluateAgainstBase(const std::string& dir, int64_t windows) {
  auto model = LoadModelForInference(dir, 2);
  auto base = LoadModelForInference(kModel, 2);
  EXPECT_TRUE(model.ok() && base.ok()) << model.status() << base.status();
  if (!model.ok() || !base.ok()) return EvalResult();
  auto tokens = TokenizeTextFile(base->tokenizer, kText, {2180, 4358});
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  EvalOptions options;
  options.seqlen = 512;
  options.max_windows = windows;
  auto result = Evaluate(*model->model, *tokens, options, base->model.get());
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : EvalResult();
}

}  // namespace qshard::tiny_jobs
