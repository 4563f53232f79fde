#include "worker/calibration/input_stats_collector.h"

namespace qshard {

void InputStatsCollector::OnLinearInput(int layer, const std::string& linear, const Tensor& x) {
  if (layer != layer_ || !groups_.count(linear)) return;
  auto [it, inserted] = sums_.try_emplace(linear, x.cols());
  HessianSum& sum = it->second;
  for (int64_t row = 0; row < x.rows(); row += seqlen_) sum.AddWindow(x.row(row), std::min(seqlen_, x.rows() - row));
}

}  // namespace qshard
