// The --kernels flag of eval and generate: how a quantized checkpoint's linears run
// (worker/export/gptq_tensor_source.h, GptqLinearMode).
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace qshard::cli {

void AddKernelsFlag(CLI::App* app, std::string& kernels);


}  // namespace qshard::cli
