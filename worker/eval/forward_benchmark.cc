#include "worker/eval/forward_benchmark.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {

absl::StatusOr<ForwardBenchmarkResult> BenchmarkForward(const ResidentModel& model, const std::vector<int32_t>& tokens,
                                                        const ForwardBenchmarkOptions& options) {
  if (options.seqlen <= 0 || options.windows <= 0 || options.batch_windows <= 0 || options.repeats <= 0)
    return absl::InvalidArgumentError("seqlen, windows, batch_windows and repeats must be positive");
  if (static_cast<int64_t>(tokens.size()) < options.windows * options.seqlen)
    return absl::InvalidArgumentError(absl::StrCat(tokens.size(), " tokens do not fill ", options.windows,
                                                   " windows of ", options.seqlen));
  const auto run_batch = [&](int64_t first) -> absl::Status {
    const int64_t n = std::min(options.batch_windows, options.windows - first);
    const auto span = absl::MakeConstSpan(tokens).subspan(first * options.seqlen, n * options.seqlen);
    QSHARD_ASSIGN_OR_RETURN(const Tensor logits, model.Forward(span, n, options.seqlen));
    return absl::OkStatus();
  };
  QSHARD_RETURN_IF_ERROR(run_batch(0));  // warm-up: first-touch allocations, BLAS thread start
  double best = std::numeric_limits<double>::infinity();
  for (int repeat = 0; repeat < options.repeats; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t first = 0; first < options.windows; first += options.batch_windows) {
      QSHARD_RETURN_IF_ERROR(run_batch(first));
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  ForwardBenchmarkResult result;
  result.tokens = options.windows * options.seqlen;
  result.seconds = best;
  result.tokens_per_second = best > 0 ? result.tokens / best : 0.0;
  return result;
}

}  // namespace qshard
