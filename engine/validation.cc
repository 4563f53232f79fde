#include "engine/validation.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "engine/model_loading.h"
#include "worker/eval/evaluate.h"

namespace qshard {

absl::StatusOr<nlohmann::json> ValidateCheckpoint(const JobSpec& spec) {
  const ValidationSpec& v = spec.validation;
  const int threads = spec.execution.threads;
  QSHARD_ASSIGN_OR_RETURN(LoadedModel quantized, LoadModelForInference(spec.out_dir, threads, GptqLinearMode::kExact));
  QSHARD_ASSIGN_OR_RETURN(LoadedModel base, LoadModelForInference(spec.model_dir, threads));
  auto tokens = TokenizeTextFile(base.tokenizer, v.text, v.lines);
  if (!tokens.ok()) return WithContext(tokens.status(), "validation text");
  EvalOptions options;
  options.seqlen = v.seqlen;
  options.max_windows = v.max_windows;
  options.threads = threads;
  QSHARD_ASSIGN_OR_RETURN(const EvalResult result, Evaluate(*quantized.model, *tokens, options, base.model.get()));
  return nlohmann::json{
      {"text", v.text},
      {"lines", absl::StrCat(v.lines.first, "-", v.lines.last > 0 ? std::to_string(v.lines.last) : "")},
      {"seqlen", result.seqlen},
      {"windows", result.windows},
      {"kernels", "exact"},
      {"perplexity", result.perplexity},
      {"base_perplexity", result.base_perplexity},
      {"kl_divergence", result.kl_divergence},
      {"top1_agreement", result.top1_agreement}};
}

}  // namespace qshard
