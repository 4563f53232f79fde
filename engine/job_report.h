// The rows and summary of quant_report.json: one row per quantized linear (relative output
// error, solve seconds, damping, the exported bits, FlattenQuant's activation bits and added
// inputs), and the job's summary over them.
#pragma once

#include <map>
#include <string>

#include "nlohmann/json.hpp"
#include "worker/methods/layer_method.h"
#include "worker/quant/quantized_weight.h"

namespace qshard {

nlohmann::json ReportRow(int layer, const LinearReport& r, const std::map<std::string, QuantizedWeight>& linears);

// Errors are null in the summary where they were not measured (no calibration data).
nlohmann::json Summary(const nlohmann::json& modules, double seconds_total, double seconds_solve);

}  // namespace qshard
