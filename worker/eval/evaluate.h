// Perplexity of a model on a token stream by the protocol of ../shared/reference.md
// (non-overlapping windows of seqlen tokens, tail dropped, exp of the mean next-token NLL over
// all windows × (seqlen − 1) predictions), and, given the unquantized model as `base`, the
// divergence from it on the same windows: mean KL(base ‖ model) and top-1 agreement.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/eval/window_logits.h"
#include "worker/model/resident_model.h"

namespace qshard {

struct EvalOptions {
  int64_t seqlen = 0;         // tokens per window; 0 = min(2048, the model's max positions)
  int64_t max_windows = 0;    // evaluate at most this many windows from the start; 0 = all
  int64_t batch_windows = 4;  // windows per forward pass (memory: one window's logits at a time)
  int threads = 0;            // sets the models' threads when > 0
};

struct EvalResult {
  double perplexity = 0.0;
  double nll = 0.0;        // mean next-token NLL, nats
  int64_t tokens = 0;      // windows × seqlen
  int64_t windows = 0;
  int64_t seqlen = 0;
  int64_t predictions = 0;  // windows × (seqlen − 1)
  bool has_base = false;    // the three fields below are set only with a base model
  double kl_divergence = 0.0;  // mean KL(base ‖ model) per prediction, nats
  double top1_agreement = 0.0;
  double base_perplexity = 0.0;
  double seconds = 0.0;
  double tokens_per_second = 0.0;  // tokens / seconds (both models' forward passes included)
};

using EvalProgress = std::function<void(int64_t windows_done, int64_t windows_total)>;

absl::StatusOr<EvalResult> Evaluate(ResidentModel& model, const std::vector<int32_t>& tokens, const EvalOptions& options,
                                    ResidentModel* base = nullptr, const EvalProgress& progress = nullptr);
// The same through any forward pass (a device's: engine/device_model_loading.h); options.threads
// is the caller's to apply.
absl::StatusOr<EvalResult> Evaluate(WindowLogits& model, const std::vector<int32_t>& tokens, const EvalOptions& options,
                                    WindowLogits* base = nullptr, const EvalProgress& progress = nullptr);

}  // namespace qshard
