// Which CUDA kernel serves each linear of a model evaluated on the device, and the refusals
// (cuda_linear_choice.h), and the layer forward's check of a linear served by a kernel instead of
// a float weight; CUDA headers, no GPU.
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/layer_forward.h"
#include "worker/cuda/cuda_linear_choice.h"

namespace qshard {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// A GPTQ layer whose every code is `code` and every stored zero point `stored_zero` (true zero
// stored + 1), scales 1, contiguous groups.
GptqLinearTensors Layer(int bits, int64_t in, int64_t out, int64_t groups, uint32_t code, uint32_t stored_zero) {
  GptqLinearTensors t;
  t.bits = bits;
  t.in_features = in;
  t.out_features = out;
  t.groups = groups;
  uint32_t code_word = 0, zero_word = 0;
  for (int shift = 0; shift + bits <= 32; shift += bits) {
    code_word |= code << shift;
    zero_word |= stored_zero << shift;
  }
  t.qweight.assign(in * bits / 32 * out, static_cast<int32_t>(code_word));
  t.qzeros.assign(groups * (out * bits / 32), static_cast<int32_t>(zero_word));
  t.scales.assign(groups * out, 0x3C00);  // fp16 1.0
  for (int64_t i = 0; i < in; ++i) t.g_idx.push_back(static_cast<int32_t>(i * groups / in));
  return t;
}

TEST(CudaLinearChoiceTest, WeightOnlyKernelsByWidthAndTokens) {
  const GptqLinearTensors w4 = Layer(4, 96, 40, 3, 5, 7);
  auto four = ChooseCudaLinear("layer 0 self_attn.q_proj", &w4, PackedLinearKernels::kWeightOnly);
  ASSERT_TRUE(four.ok()) << four.status();
  EXPECT_EQ(*four, CudaLinearKernel::kGptqW4Repacked);
  EXPECT_EQ(CudaLinearKernelName(*four, 4, 1), "w4a16-repacked");
  EXPECT_EQ(CudaLinearKernelName(*four, 4, kFusedMaxTokens), "w4a16-repacked");
  EXPECT_EQ(CudaLinearKernelName(*four, 4, kFusedMaxTokens + 1), "w4a16-dequantize-fp16-cublas");

  const GptqLinearTensors w8 = Layer(8, 36, 12, 1, 200, 127);
  auto eight = ChooseCudaLinear("layer 1 mlp.down_proj", &w8, PackedLinearKernels::kWeightOnly);
  ASSERT_TRUE(eight.ok()) << eight.status();
  EXPECT_EQ(*eight, CudaLinearKernel::kGptqFused);
  EXPECT_EQ(CudaLinearKernelName(*eight, 8, 16), "w8a16");
  EXPECT_EQ(CudaLinearKernelName(*eight, 8, 512), "w8a16-dequantize-fp16-cublas");

  for (PackedLinearKernels kernels : {PackedLinearKernels::kWeightOnly, PackedLinearKernels::kInt8Activations}) {
    auto float_linear = ChooseCudaLinear("lm", nullptr, kernels);
    ASSERT_TRUE(float_linear.ok());
    EXPECT_EQ(*float_linear, CudaLinearKernel::kFloat32Cublas);
    EXPECT_EQ(CudaLinearKernelName(*float_linear, 32, 512), "fp32-cublas");
  }
}

TEST(CudaLinearChoiceTest, WidthsWithoutAKernelAreRefusedByName) {
  for (int bits : {2, 3}) {
    const GptqLinearTensors w = Layer(bits, 96, 32, 1, 1, 1);
    auto refused = ChooseCudaLinear("layer 3 mlp.up_proj", &w, PackedLinearKernels::kWeightOnly);
    ASSERT_FALSE(refused.ok()) << bits;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(refused.status().message()),
                AllOf(HasSubstr("layer 3 mlp.up_proj (" + std::to_string(bits) + " bits"),
                      HasSubstr("bits must be 4 or 8"), HasSubstr("--device cpu or --kernels dequantize")));
  }
  GptqLinearTensors bad = Layer(4, 64, 16, 2, 1, 1);
  bad.g_idx[3] = 2;
  auto damaged = ChooseCudaLinear("layer 0 self_attn.k_proj", &bad, PackedLinearKernels::kWeightOnly);
  ASSERT_FALSE(damaged.ok());
  EXPECT_THAT(std::string(damaged.status().message()), AllOf(HasSubstr("k_proj"), HasSubstr("g_idx[3] = 2")));
  bad.qweight.pop_back();
  EXPECT_FALSE(ChooseCudaLinear("x", &bad, PackedLinearKernels::kWeightOnly).ok());
}

TEST(CudaLinearChoiceTest, Int8ServesOnlyLayersThatConvertExactly) {
  // Stored zero 127: true zero 128, so codes 0..255 give −128..127.
  for (uint32_t code : {0u, 255u}) {
    const GptqLinearTensors sym = Layer(8, 40, 20, 1, code, 127);
    auto w8a8 = ChooseCudaLinear("layer 0 self_attn.v_proj", &sym, PackedLinearKernels::kInt8Activations);
    ASSERT_TRUE(w8a8.ok()) << w8a8.status();
    EXPECT_EQ(*w8a8, CudaLinearKernel::kW8A8);
    EXPECT_EQ(CudaLinearKernelName(*w8a8, 8, 512), "w8a8-cublaslt");
  }
  struct Case {
    GptqLinearTensors layer;
    const char* why;
  };
  const Case cases[] = {{Layer(4, 40, 24, 1, 3, 7), "needs 8-bit codes"},
                        {Layer(8, 40, 20, 2, 3, 127), "one group per output channel"},
                        {Layer(8, 40, 20, 1, 255, 0), "outside int8 (asymmetric grid)"}};
  for (const Case& c : cases) {
    auto refused = ChooseCudaLinear("layer 2 mlp.gate_proj", &c.layer, PackedLinearKernels::kInt8Activations);
    ASSERT_FALSE(refused.ok()) << c.why;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(refused.status().message()),
                AllOf(HasSubstr("layer 2 mlp.gate_proj"), HasSubstr(c.why), HasSubstr("--bits 8 --sym --group-size -1"),
                      HasSubstr("use --device cpu")));
  }
}

// Never called: the check only looks at which pointers are set.
class NoKernel final : public gpu::DeviceLinearKernel {
 public:
  gpu::CudaStatus Apply(const gpu::SolverContext&, const float*, int64_t, float*, bool) override {
    return gpu::CudaStatus::Error("not run");
  }
};

TEST(CudaLinearChoiceTest, TheLayerTakesAKernelInsteadOfAWeight) {
  static const float kValue = 0.0f;
  NoKernel kernel;
  gpu::DeviceLayerWeights w;
  w.arch.kind = gpu::LayerKind::kLlama;
  w.arch.hidden = 64;
  w.arch.ffn = 96;
  w.arch.heads = w.arch.kv_heads = 4;
  w.arch.head_dim = 16;
  for (gpu::DeviceLinear* l : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down}) l->weight = &kValue;
  w.norm1_weight = w.norm2_weight = &kValue;
  ASSERT_TRUE(gpu::ValidateDeviceLayer(w).ok());
  w.q.weight = nullptr;
  w.q.kernel = &kernel;
  EXPECT_TRUE(gpu::ValidateDeviceLayer(w).ok());
  w.q.weight = &kValue;
  EXPECT_THAT(gpu::ValidateDeviceLayer(w).message(), HasSubstr("q has both a weight and a kernel"));
  w.q.weight = nullptr;
  w.q.kernel = nullptr;
  EXPECT_THAT(gpu::ValidateDeviceLayer(w).message(), HasSubstr("q has no weight"));
}

}  // namespace
}  // namespace qshard
