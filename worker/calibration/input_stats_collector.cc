#include "worker/calibration/input_stats_collector.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {

void InputStatsCollector::OnLinearInput(int layer, const std::string& linear, const Tensor& x) {
  if (layer != layer_ || !groups_.count(linear)) return;
  if (device_ != nullptr) {  // a device's inputs never reach the host
    if (status_.ok()) status_ = absl::InternalError(absl::StrCat("layer ", layer, " ", linear,
                                                                 ": a host input given to a device's statistics"));
    return;
  }
  HessianWorkspace& workspace = workspace_ != nullptr ? *workspace_ : own_workspace_;
  auto it = sums_.find(linear);
  if (it == sums_.end()) it = sums_.emplace(linear, workspace.NewSum(x.cols())).first;
  it->second.AddWindowsToUpper(x.data(), x.rows(), seqlen_, workspace);
}

absl::StatusOr<OffHostHessianSum*> InputStatsCollector::DeviceSum(const std::string& linear, int64_t dim) {
  if (device_ == nullptr) return absl::InternalError(absl::StrCat(linear, ": device statistics without a device"));
  if (!groups_.count(linear)) return nullptr;
  auto it = device_sums_.find(linear);
  if (it == device_sums_.end()) {
    QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<OffHostHessianSum> sum, device_->NewHessianSum(dim));
    it = device_sums_.emplace(linear, std::move(sum)).first;
  }
  if (it->second->dim() != dim)
    return absl::InternalError(absl::StrCat(linear, ": a device sum ", it->second->dim(), " wide asked for ", dim));
  return it->second.get();
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
