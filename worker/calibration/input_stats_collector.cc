#include "worker/calibration/input_stats_collector.h"

namespace qshard {

void InputStatsCollector::OnLinearInput(int layer, const std::string& linear, const Tensor& x) {
  if (layer != layer_ || !groups_.count(linear)) return;
  HessianWorkspace& workspace = workspace_ != nullptr ? *workspace_ : own_workspace_;
  auto it = sums_.find(linear);
  if (it == sums_.end()) it = sums_.emplace(linear, workspace.NewSum(x.cols())).first;
  it->second.AddWindowsToUpper(x.data(), x.rows(), seqlen_, workspace);
}

std::map<std::string, HessianSum> InputStatsCollector::Take() {
  std::map<std::string, HessianSum> sums = TakeUpper();
  for (auto& [name, sum] : sums) sum.MirrorUpper(workspace_ != nullptr ? workspace_->pool : nullptr);
  return sums;
}

}  // namespace qshard
