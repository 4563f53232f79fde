// The group size a method that chooses it per matrix (the registry's group_size_of: FineQuant)
// will give each linear, asked of the source weights before any layer is solved, so the
// checkpoint writer can declare every tensor up front. The method's solve reaches the same
// sizes from the same weights.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "worker/methods/method_registry.h"
#include "worker/model/decoder_model.h"

namespace qshard {

// Full tensor base name ("model.layers.3.self_attn.q_proj") → group size, for the linears whose
// size is not the spec's; one true-sequential group (one shared input) gets one size.
absl::StatusOr<std::map<std::string, int>> PlanModuleGroupSizes(const DecoderModel& source,
                                                                const MethodRegistration& method,
                                                                const MethodOptions& options,
                                                                const std::set<std::string>& skipped,
                                                                const std::function<void(const std::string&)>& log);

}  // namespace qshard
