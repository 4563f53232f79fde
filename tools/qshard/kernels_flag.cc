#include "tools/qshard/kernels_flag.h"

namespace qshard::cli {

void AddKernelsFlag(CLI::App* app, std::string& kernels) {
  app->add_option("--kernels", kernels,
                  "GPTQ checkpoints. On the CPU: exact (fp32 activations x packed codes, equal to dequantize "
                  "within float rounding), int8 (per-token int8 activations, alias w4a8/w8a8) or dequantize "
                  "(float weights + BLAS). On cuda (--device): exact = fp16 activations x packed 4/8-bit "
                  "codes in the fused w4a16/w8a16 kernels (windows over 64 tokens: dequantized to fp16 on the "
                  "device + cuBLAS), NOT bit-exact to the CPU; dequantize = fp32 cuBLAS on weights dequantized "
                  "on the host, the CPU's dequantize within float rounding; int8 = W8A8 through cuBLASLt, only "
                  "for symmetric 8-bit per-channel checkpoints. A linear the device cannot serve is an error, "
                  "never a CPU fallback")
      ->capture_default_str();
}

}  // namespace qshard::cli
