#include "engine/group_size_plan.h"

#include <chrono>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/status.h"

namespace qshard {

absl::StatusOr<std::map<std::string, int>> PlanModuleGroupSizes(const DecoderModel& source,
                                                                const MethodRegistration& method,
                                                                const MethodOptions& options,
                                                                const std::set<std::string>& skipped,
                                                                const std::function<void(const std::string&)>& log) {
  const auto start = std::chrono::steady_clock::now();
  std::map<std::string, int> sizes;
  for (int layer = 0; layer < source.config().num_layers; ++layer) {
    QSHARD_ASSIGN_OR_RETURN(const DecoderLayerWeights weights, source.LoadLayer(layer));
    const std::string prefix = source.tensor_names().Layer(layer);
    for (const std::vector<std::string>& group : source.LinearGroups()) {
      std::vector<std::string> linears;
      std::vector<const Tensor*> group_weights;
      for (const std::string& linear : group) {
        if (skipped.count(linear)) continue;
        linears.push_back(linear);
        group_weights.push_back(&weights.linear(linear).weight);
      }
      if (linears.empty()) continue;
      auto size = method.group_size_of(group_weights, options);
      if (!size.ok()) return WithContext(size.status(), prefix + linears.front());
      if (*size == options.spec.group_size) continue;
      for (const std::string& linear : linears) sizes[prefix + linear] = *size;
      log(absl::StrFormat("%s: layer %d %s get%s group size %d", std::string(method.name), layer,
                          absl::StrJoin(linears, ", "), linears.size() > 1 ? "" : "s", *size));
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log(absl::StrFormat("%s: group sizes chosen from the weights in %.2f s, %d linears refined",
                      std::string(method.name), seconds, sizes.size()));
  return sizes;
}

}  // namespace qshard
