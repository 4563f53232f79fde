#include "worker/eval/generate.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/eval/next_token_stats.h"

namespace qshard {

absl::StatusOr<std::vector<int32_t>> Generate(const ResidentModel& model, const std::vector<int32_t>& prompt,
                                              int max_new_tokens, int32_t eos, bool kv_cache) {
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt: greedy decoding needs at least one token");
  const int64_t context_limit = model.config().max_positions;
  if (static_cast<int64_t>(prompt.size()) > context_limit)
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt.size(), " tokens exceeds the model's ",
                                                   context_limit, " positions"));
  KvCache cache(model.config());
  std::vector<int32_t> context = prompt;
  std::vector<int32_t> generated;
  while (static_cast<int>(generated.size()) < max_new_tokens && static_cast<int64_t>(context.size()) < context_limit) {
    const int64_t seq = static_cast<int64_t>(context.size());
    // With the cache, the tokens not run yet: the prompt first, then the last token produced.
    const absl::Span<const int32_t> fresh = kv_cache && !generated.empty()
                                                ? absl::MakeConstSpan(context).subspan(seq - 1)
                                                : absl::MakeConstSpan(context);
    QSHARD_ASSIGN_OR_RETURN(const Tensor hidden,
                            kv_cache ? model.HiddenCached(fresh, cache) : model.Hidden(context, 1, seq));
    const int64_t last_row = hidden.rows() - 1;
    const Tensor last({1, hidden.cols()}, std::vector<float>(hidden.row(last_row), hidden.row(last_row + 1)));
    const Tensor logits = model.decoder().Logits(last);
    const int32_t next = static_cast<int32_t>(ArgMax(logits.data(), logits.cols()));
    generated.push_back(next);
    context.push_back(next);
    if (next == eos) break;
  }
  return generated;
}

}  // namespace qshard
