// What Evaluate runs: a model that turns windows of token ids into next-token logits, on the CPU
// (ResidentWindowLogits over a ResidentModel) or on a device (engine/device_model_loading.h), so
// that every device shares one metric code (next_token_stats.h, evaluate.cc).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/model_config.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "worker/model/resident_model.h"

namespace qshard {

class WindowLogits {
 public:
  virtual ~WindowLogits() = default;
  virtual const ModelConfig& config() const = 0;
  // Host threads for the metrics (and, on the CPU, the forward pass).
  virtual ThreadPool& pool() = 0;
  // Runs `batch` windows of `seq` tokens each; Logits(w) then gives window w's.
  virtual absl::Status RunWindows(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) = 0;
  // Window w's logits for its first seq − 1 positions (the last predicts nothing inside the
  // window), [seq − 1, vocab]. One window at a time: 400 MB for a 50k vocabulary at seq 2048.
  virtual absl::StatusOr<Tensor> Logits(int64_t window) = 0;
};

// A ResidentModel's forward pass on the CPU.
class ResidentWindowLogits final : public WindowLogits {
 public:
  explicit ResidentWindowLogits(const ResidentModel& model) : model_(model) {}
  const ModelConfig& config() const override { return model_.config(); }
  ThreadPool& pool() override { return model_.decoder().pool(); }
  absl::Status RunWindows(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) override;
  absl::StatusOr<Tensor> Logits(int64_t window) override;

 private:
  const ResidentModel& model_;
  Tensor hidden_;  // the last RunWindows's, [batch·seq, hidden]
  int64_t seq_ = 0;
};

}  // namespace qshard
