// Greedy decoding: the most likely next token, appended and fed back, until the end-of-text
// token, the token budget or the model's context length. By default the keys and values of
// past positions are kept (kv_cache.h), so a step runs only the new token; without the cache
// each step re-runs the whole context, the reference the cached path is tested against.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/resident_model.h"

namespace qshard {

// The generated ids (without the prompt). `eos` < 0: never stop early; the eos token itself is
// included when produced.
absl::StatusOr<std::vector<int32_t>> Generate(const ResidentModel& model, const std::vector<int32_t>& prompt,
                                              int max_new_tokens, int32_t eos, bool kv_cache = true);

}  // namespace qshard
