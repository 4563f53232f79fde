// A forward-pass observer that accumulates, for the chosen groups of linears of one decoder
// layer, the input statistics Σ x xᵀ (HessianSum) window by window. Windows arrive in
// batches in window order, so the sums follow the fixed order the conventions require. Given a
// StatisticsDevice, the sums live there instead, fed by the device's forward pass (DeviceSum),
// and come back to the host when taken.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "worker/calibration/hessian.h"
#include "worker/calibration/statistics_device.h"
#include "worker/model/decoder_model.h"

namespace qshard {

class InputStatsCollector : public LayerObserver {
 public:
  // `groups` names each group by its first linear (DecoderModel::LinearGroups()[g][0]).
  // `workspace` (optional, shared by a worker's collectors) lends threads, a scratch product
  // and spare sum buffers. `device` (optional): where the sums accumulate instead of the CPU; its
  // inputs come through DeviceSum, never as host tensors.
  InputStatsCollector(int layer, std::set<std::string> groups, int64_t seqlen, HessianWorkspace* workspace = nullptr,
                      StatisticsDevice* device = nullptr)
      : layer_(layer), groups_(std::move(groups)), seqlen_(seqlen), workspace_(workspace), device_(device) {}

  void OnLinearInput(int layer, const std::string& linear, const Tensor& x) override;

  // With a device: the sum of group `linear` (made `dim` wide on first use) for the device's
  // forward pass to add that group's inputs to; null when this collector does not collect it.
  absl::StatusOr<OffHostHessianSum*> DeviceSum(const std::string& linear, int64_t dim);

  // The first error of a device (observers cannot fail a forward pass); a collector whose
  // status is not OK took only part of its windows, and Take's sums must not be used.
  const absl::Status& status() const { return status_; }

  // The accumulated sums, keyed by group name; the collector is empty afterwards.
  std::map<std::string, HessianSum> Take();
  // The same with only their upper triangles current (HessianSum::AddWindowsToUpper), for a
  // caller that adds partials together and mirrors once at the end.
  std::map<std::string, HessianSum> TakeUpper();

 private:
  int layer_;
  std::set<std::string> groups_;
  int64_t seqlen_;
  HessianWorkspace* workspace_;
  HessianWorkspace own_workspace_;  // when none is lent
  std::map<std::string, HessianSum> sums_;
  StatisticsDevice* device_;
  std::map<std::string, std::unique_ptr<OffHostHessianSum>> device_sums_;
  absl::Status status_;
};

}  // namespace qshard
