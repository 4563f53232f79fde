#include "worker/eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/eval/next_token_stats.h"

namespace qshard {
namespace {

struct Totals {
  double nll = 0.0;
  double base_nll = 0.0;
  double kl = 0.0;
  int64_t agreements = 0;
};

// Adds one window's predictions to `totals`; rows are computed in parallel and summed in order,
// so the result does not depend on the thread count.
void AddWindow(const Tensor& logits, const Tensor* base_logits, const int32_t* targets, ThreadPool& pool,
               Totals& totals) {
  const int64_t rows = logits.rows();
  const int64_t vocab = logits.cols();
  std::vector<NextTokenStats> stats(rows);
  constexpr int64_t kRowsPerTask = 16;
  pool.ParallelFor((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task) {
    for (int64_t r = task * kRowsPerTask; r < std::min(rows, (task + 1) * kRowsPerTask); ++r) {
      if (base_logits != nullptr) {
        stats[r] = CompareNextToken(logits.row(r), base_logits->row(r), vocab, targets[r]);
      } else {
        stats[r].nll = NextTokenNll(logits.row(r), vocab, targets[r]);
      }
    }
  });
  for (const NextTokenStats& s : stats) {
    totals.nll += s.nll;
    totals.base_nll += s.base_nll;
    totals.kl += s.kl_divergence;
    totals.agreements += s.top1_agrees ? 1 : 0;
  }
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(ResidentModel& model, const std::vector<int32_t>& tokens, const EvalOptions& options,
                                    ResidentModel* base, const EvalProgress& progress) {
  if (options.threads > 0) {
    model.SetThreads(options.threads);
    if (base != nullptr) base->SetThreads(options.threads);
  }
  ResidentWindowLogits model_logits(model);
  std::optional<ResidentWindowLogits> base_logits;
  if (base != nullptr) base_logits.emplace(*base);
  return Evaluate(model_logits, tokens, options, base_logits ? &*base_logits : nullptr, progress);
}

absl::StatusOr<EvalResult> Evaluate(WindowLogits& model, const std::vector<int32_t>& tokens, const EvalOptions& options,
                                    WindowLogits* base, const EvalProgress& progress) {
  const ModelConfig& config = model.config();
  if (options.seqlen < 0 || options.max_windows < 0)
    return absl::InvalidArgumentError("seqlen and max_windows must not be negative");
  const int64_t seqlen = options.seqlen > 0 ? options.seqlen : std::min<int64_t>(2048, config.max_positions);
  if (seqlen < 2) return absl::InvalidArgumentError(absl::StrCat("seqlen ", seqlen, " leaves nothing to predict"));
  if (seqlen > config.max_positions)
    return absl::InvalidArgumentError(absl::StrCat("seqlen ", seqlen, " exceeds the model's max_position_embeddings ",
                                                   config.max_positions));
  if (base != nullptr && base->config().vocab_size != config.vocab_size)
    return absl::InvalidArgumentError(absl::StrCat("base model vocabulary (", base->config().vocab_size,
                                                   ") differs from the model's (", config.vocab_size, ")"));
  int64_t windows = static_cast<int64_t>(tokens.size()) / seqlen;
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  if (windows == 0)
    return absl::InvalidArgumentError(
        absl::StrCat(tokens.size(), " tokens do not fill one window of ", seqlen, " tokens"));
  const int64_t batch = std::max<int64_t>(1, options.batch_windows);

  const auto start = std::chrono::steady_clock::now();
  Totals totals;
  for (int64_t first = 0; first < windows; first += batch) {
    const int64_t n = std::min(batch, windows - first);
    const absl::Span<const int32_t> span = absl::MakeConstSpan(tokens).subspan(first * seqlen, n * seqlen);
    QSHARD_RETURN_IF_ERROR(model.RunWindows(span, n, seqlen));
    if (base != nullptr) QSHARD_RETURN_IF_ERROR(base->RunWindows(span, n, seqlen));
    for (int64_t w = 0; w < n; ++w) {
      QSHARD_ASSIGN_OR_RETURN(const Tensor logits, model.Logits(w));
      Tensor base_logits;
      if (base != nullptr) {
        QSHARD_ASSIGN_OR_RETURN(base_logits, base->Logits(w));
      }
      AddWindow(logits, base != nullptr ? &base_logits : nullptr, span.data() + w * seqlen + 1, model.pool(), totals);
    }
    if (progress) progress(first + n, windows);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  EvalResult r;
  r.windows = windows;
  r.seqlen = seqlen;
  r.tokens = windows * seqlen;
  r.predictions = windows * (seqlen - 1);
  r.nll = totals.nll / r.predictions;
  r.perplexity = std::exp(r.nll);
  if (base != nullptr) {
    r.has_base = true;
    r.kl_divergence = totals.kl / r.predictions;
    r.top1_agreement = static_cast<double>(totals.agreements) / r.predictions;
    r.base_perplexity = std::exp(totals.base_nll / r.predictions);
  }
  r.seconds = seconds;
  r.tokens_per_second = seconds > 0 ? r.tokens / seconds : 0.0;
  return r;
}

}  // namespace qshard
