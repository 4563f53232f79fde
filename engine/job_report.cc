#include "engine/job_report.h"

#include <algorithm>
#include <cmath>

namespace qshard {

using nlohmann::json;

json ReportRow(int layer, const LinearReport& r, const std::map<std::string, QuantizedWeight>& linears) {
  json row = {{"layer", layer},
              {"name", r.name},
              {"relative_error", std::isnan(r.relative_error) ? json(nullptr) : json(r.relative_error)},
              {"seconds", r.seconds},
              {"damp_used", r.damp_used},
              {"damp_retries", r.damp_retries}};
  const auto it = linears.find(r.name);
  if (it == linears.end()) return row;
  const QuantizedWeight& q = it->second;
  row["weight_bits"] = q.bits;
  // FlattenQuant's linears: their activation bits and the input channels the split added.
  if (q.act_bits != 0) {
    row["act_bits"] = q.act_bits;
    row["added_inputs"] = q.cols - q.layer_cols();
  }
  return row;
}

json JobPhases::ToJson() const {
  return {{"setup", setup},   {"start_workers", start_workers}, {"calibration", calibration},
          {"solve", solve},   {"propagation", propagation},     {"write", write}};
}

json Summary(const json& modules, double seconds_total, double seconds_solve, const JobPhases& phases) {
  double sum = 0.0, worst = 0.0;
  int raised = 0, measured = 0;
  for (const json& m : modules) {
    raised += m["damp_retries"].get<int>() > 0;
    if (m["relative_error"].is_null()) continue;
    sum += m["relative_error"].get<double>();
    worst = std::max(worst, m["relative_error"].get<double>());
    ++measured;
  }
  return {{"quantized_linears", modules.size()},
          {"mean_relative_error", measured > 0 ? json(sum / measured) : json(nullptr)},
          {"max_relative_error", measured > 0 ? json(worst) : json(nullptr)},
          {"linears_with_raised_damping", raised},
          {"seconds_solve", seconds_solve},
          {"seconds_total", seconds_total},
          {"seconds_by_phase", phases.ToJson()}};
}

}  // namespace qshard
