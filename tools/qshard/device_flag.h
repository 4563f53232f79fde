// The --device flag of `quantize` and `worker`: where the worker's calibration statistics and
// GPTQ solves run; and --validate-device of `quantize` and `coordinator`: where the job's final
// validation runs (worker/device/device.h parses both; docs/cli.md); --device-memory of every
// command that opens a CUDA device: how much of its memory this process may use.
#pragma once

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"

namespace qshard::cli {

void AddDeviceFlag(CLI::App& app, std::string& device);

// Applied with ApplyDeviceMemory (worker/device/device.h) to the devices the command opens.
void AddDeviceMemoryFlag(CLI::App& app, uint64_t& bytes);

// `when_empty` says what an empty value (the default) means.
void AddValidateDeviceFlag(CLI::App& app, std::string& device, const std::string& when_empty);

}  // namespace qshard::cli
