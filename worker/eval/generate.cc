#include "worker/eval/generate.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/eval/next_token_stats.h"
#include "worker/model/kv_cache.h"

namespace qshard {
namespace {

// A ResidentModel continuing its sequence through the key/value cache, or (without it) re-running
// the whole context each step.
class ResidentIncremental final : public IncrementalLogits {
 public:
  ResidentIncremental(const ResidentModel& model, bool kv_cache)
      : model_(model), kv_cache_(kv_cache), cache_(model.config()) {}
  const ModelConfig& config() const override { return model_.config(); }
  void Reset() override {
    cache_ = KvCache(model_.config());
    context_.clear();
  }
  absl::StatusOr<Tensor> Next(absl::Span<const int32_t> fresh) override {
    context_.insert(context_.end(), fresh.begin(), fresh.end());
    const int64_t seq = static_cast<int64_t>(context_.size());
    QSHARD_ASSIGN_OR_RETURN(const Tensor hidden,
                            kv_cache_ ? model_.HiddenCached(fresh, cache_) : model_.Hidden(context_, 1, seq));
    const int64_t last_row = hidden.rows() - 1;
    return model_.decoder().Logits(
        Tensor({1, hidden.cols()}, std::vector<float>(hidden.row(last_row), hidden.row(last_row + 1))));
  }

 private:
  const ResidentModel& model_;
  bool kv_cache_;
  KvCache cache_;
  std::vector<int32_t> context_;
};

}  // namespace

absl::StatusOr<std::vector<int32_t>> Generate(IncrementalLogits& model, const std::vector<int32_t>& prompt,
                                              int max_new_tokens, int32_t eos) {
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt: greedy decoding needs at least one token");
  const int64_t context_limit = model.config().max_positions;
  if (static_cast<int64_t>(prompt.size()) > context_limit)
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt.size(), " tokens exceeds the model's ",
                                                   context_limit, " positions"));
  model.Reset();
  std::vector<int32_t> context = prompt;
  std::vector<int32_t> generated;
  while (static_cast<int>(generated.size()) < max_new_tokens && static_cast<int64_t>(context.size()) < context_limit) {
    // The tokens not run yet: the prompt first, then the last token produced.
    const absl::Span<const int32_t> fresh =
        generated.empty() ? absl::MakeConstSpan(context) : absl::MakeConstSpan(context).subspan(context.size() - 1);
    QSHARD_ASSIGN_OR_RETURN(const Tensor logits, model.Next(fresh));
    const int32_t next = static_cast<int32_t>(ArgMax(logits.data(), logits.cols()));
    generated.push_back(next);
    context.push_back(next);
    if (next == eos) break;
  }
  return generated;
}

absl::StatusOr<std::vector<int32_t>> Generate(const ResidentModel& model, const std::vector<int32_t>& prompt,
                                              int max_new_tokens, int32_t eos, bool kv_cache) {
  ResidentIncremental incremental(model, kv_cache);
  return Generate(incremental, prompt, max_new_tokens, eos);
}

}  // namespace qshard
