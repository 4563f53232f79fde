#include "worker/calibration/input_stats_collector.h"

namespace qshard {

void InputStatsCollector::OnLinearInput(int layer, const std::string& linear, const Tensor& x) {
  if (layer != layer_ || !groups_.count(linear)) return;
  auto [it, inserted] = sums_.try_emplace(linear, x.cols());
  HessianSum& sum = it->second;
  sum.AddWindowsToUpper(x.data(), x.rows(), seqlen_, workspace_ != nullptr ? *workspace_ : own_workspace_);
}

std::map<std::string, HessianSum> InputStatsCollector::Take() {
  std::map<std::string, HessianSum> sums = TakeUpper();
  for (auto& [name, sum] : sums) sum.MirrorUpper(workspace_ != nullptr ? workspace_->pool : nullptr);
  return sums;
}

}  // namespace qshard
