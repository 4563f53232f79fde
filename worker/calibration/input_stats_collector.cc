#include "worker/calibration/input_stats_collector.h"

namespace qshard {

void InputStatsCollector::OnLinearInput(int layer, const std::string& linear, const Tensor& x) {
  if (layer != layer_ || !groups_.count(linear)) return;
  if (device_ != nullptr) {
    if (!status_.ok()) return;
    auto it = device_sums_.find(linear);
    if (it == device_sums_.end()) {
      auto sum = device_->NewHessianSum(x.cols());
      if (!sum.ok()) {
        status_ = sum.status();
        return;
      }
      it = device_sums_.emplace(linear, *std::move(sum)).first;
    }
    status_ = it->second->AddWindows(x.data(), x.rows(), seqlen_);
    return;
  }
  HessianWorkspace& workspace = workspace_ != nullptr ? *workspace_ : own_workspace_;
  auto it = sums_.find(linear);
  if (it == sums_.end()) it = sums_.emplace(linear, workspace.NewSum(x.cols())).first;
  it->second.AddWindowsToUpper(x.data(), x.rows(), seqlen_, workspace);
}

std::map<std::string, HessianSum> InputStatsCollector::TakeUpper() {
  // A device's sums come back whole (both triangles), into buffers the workspace may recycle.
  HessianWorkspace& workspace = workspace_ != nullptr ? *workspace_ : own_workspace_;
  for (auto& [name, device_sum] : device_sums_) {
    if (!status_.ok()) break;
    HessianSum host = workspace.NewSum(device_sum->dim());
    status_ = device_sum->Download(host);
    if (status_.ok()) sums_.emplace(name, std::move(host));
  }
  device_sums_.clear();
  return std::move(sums_);
}

std::map<std::string, HessianSum> InputStatsCollector::Take() {
  std::map<std::string, HessianSum> sums = TakeUpper();
  for (auto& [name, sum] : sums) sum.MirrorUpper(workspace_ != nullptr ? workspace_->pool : nullptr);
  return sums;
}

}  // namespace qshard
