#include "worker/eval/window_logits.h"

#include <vector>

#include "core/status.h"

namespace qshard {

absl::Status ResidentWindowLogits::RunWindows(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) {
  QSHARD_ASSIGN_OR_RETURN(hidden_, model_.Hidden(tokens, batch, seq));
  seq_ = seq;
  return absl::OkStatus();
}

absl::StatusOr<Tensor> ResidentWindowLogits::Logits(int64_t window) {
  const int64_t first = window * seq_, count = seq_ - 1;
  return model_.decoder().Logits(
      Tensor({count, hidden_.cols()}, std::vector<float>(hidden_.row(first), hidden_.row(first + count))));
}

}  // namespace qshard
