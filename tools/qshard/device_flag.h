// The --device flag of `quantize` and `worker`: where the worker's calibration statistics and
// GPTQ solves run (worker/device/device.h parses it; docs/cli.md).
#pragma once

#include <string>

#include "CLI/CLI.hpp"

namespace qshard::cli {

void AddDeviceFlag(CLI::App& app, std::string& device);

}  // namespace qshard::cli
