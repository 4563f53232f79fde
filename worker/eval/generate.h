// Greedy decoding: the most likely next token, appended and fed back, until the end-of-text
// token, the token budget or the model's context length. By default the keys and values of
// past positions are kept (kv_cache.h), so a step runs only the new token; without the cache
// each step re-runs the whole context, the reference the cached path is tested against. The loop
// runs any IncrementalLogits: the CPU model's, or a device's (engine/device_model_loading.h).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/model_config.h"
#include "core/tensor.h"
#include "worker/model/resident_model.h"

namespace qshard {

// A model that continues one sequence token by token.
class IncrementalLogits {
 public:
  virtual ~IncrementalLogits() = default;
  virtual const ModelConfig& config() const = 0;
  // Starts a new sequence: forgets the tokens run so far.
  virtual void Reset() = 0;
  // Runs `fresh`, the tokens that follow those run since Reset; the next-token logits [1, vocab]
  // after the last of them.
  virtual absl::StatusOr<Tensor> Next(absl::Span<const int32_t> fresh) = 0;
};

// The generated ids (without the prompt). `eos` < 0: never stop early; the eos token itself is
// included when produced.
absl::StatusOr<std::vector<int32_t>> Generate(IncrementalLogits& model, const std::vector<int32_t>& prompt,
                                              int max_new_tokens, int32_t eos);
// On the CPU; without `kv_cache`, every step re-runs the whole context.
absl::StatusOr<std::vector<int32_t>> Generate(const ResidentModel& model, const std::vector<int32_t>& prompt,
                                              int max_new_tokens, int32_t eos, bool kv_cache = true);

}  // namespace qshard
