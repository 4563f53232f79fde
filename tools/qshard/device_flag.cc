#include "tools/qshard/device_flag.h"

namespace qshard::cli {

void AddDeviceFlag(CLI::App& app, std::string& device) {
  app.add_option("--device", device,
                 "Where calibration statistics and GPTQ solves run: cpu, cuda (device 0) or cuda:N; the forward "
                 "pass stays on the CPU. CUDA runs --method gptq without --mse (docs/cuda.md)")
      ->capture_default_str();
}

}  // namespace qshard::cli
