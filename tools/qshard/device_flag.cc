#include "tools/qshard/device_flag.h"

namespace qshard::cli {

void AddDeviceFlag(CLI::App& app, std::string& device) {
  app.add_option("--device", device,
                 "Where this worker calibrates and solves: cpu, cuda (device 0) or cuda:N. On CUDA, gptq runs "
                 "whole on the device (with --mse too); zfold, aespa and flattenquant calibrate there and solve on "
                 "the CPU, but for zfold's and aespa's GPTQ solves and aespa's AdaRound, which run on the device; "
                 "rtn and finequant run on the CPU (docs/cuda.md)")
      ->capture_default_str();
}

void AddDeviceMemoryFlag(CLI::App& app, uint64_t& bytes) {
  app.add_option("--device-memory", bytes,
                 "Bytes of the CUDA device's memory this process may use (0 = the whole device): what it takes "
                 "after opening the device counts against them; spills to the host, slices and refusals follow "
                 "(docs/cuda.md). Refused where the command opens no CUDA device")
      ->capture_default_str();
}

void AddValidateDeviceFlag(CLI::App& app, std::string& device, const std::string& when_empty) {
  app.add_option("--validate-device", device,
                 "Where the final validation (--validate-text) runs, in this process: cpu (the exact CPU kernels) "
                 "or cuda[:N] (the quantized model under the device's exact kernels, fp16 activations, the base "
                 "in fp32 there; docs/cuda.md). Default: " + when_empty);
}

}  // namespace qshard::cli
