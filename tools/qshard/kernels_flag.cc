#include "tools/qshard/kernels_flag.h"

namespace qshard::cli {

void AddKernelsFlag(CLI::App* app, std::string& kernels) {
  app->add_option("--kernels", kernels,
                  "GPTQ checkpoints: exact (fp32 activations x packed codes), int8 (per-token int8 activations, "
                  "alias w4a8/w8a8) or dequantize (float weights + BLAS)")
      ->capture_default_str();
}

}  // namespace qshard::cli
