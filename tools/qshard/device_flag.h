// The --device flag of `quantize` and `worker`: where the worker's calibration statistics and
// GPTQ solves run; and --validate-device of `quantize` and `coordinator`: where the job's final
// validation runs (worker/device/device.h parses both; docs/cli.md).
#pragma once

#include <string>

#include "CLI/CLI.hpp"

namespace qshard::cli {

void AddDeviceFlag(CLI::App& app, std::string& device);

// `when_empty` says what an empty value (the default) means.
void AddValidateDeviceFlag(CLI::App& app, std::string& device, const std::string& when_empty);

}  // namespace qshard::cli
