// qshard_cuda_w8a8_check: W8A8Matmul (w8a8_matmul.h) against host references on random layers
// whose widths are not multiples of 4 or 16 (so every padding path runs), 1 to 512 tokens: the
// device's int8 activations and token scales bit for bit against the host's quantization by the
// same rule (kernels/layout/int8_symmetric.h), the int32 products exactly against the host's
// integer product, and the fp16 output against the float64 product of the same codes and scales.
// Two layers come from symmetric 8-bit per-channel GPTQ layers (converted exactly, codes down to
// −128), the others from float weights.
// Also prints the quantization's error against the float64 product of the unquantized inputs.
// Exit status: 0 all passed, 1 a check failed, 2 a CUDA error, 77 no CUDA device (skipped).
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/program_setup.h"
#include "kernels/cuda/w8a8_matmul.h"
#include "kernels/layout/int8_channel_weights.h"

namespace qshard::gpu {
namespace {

struct Case {
  int tokens;
  int in_features;
  int out_features;
  bool gptq = false;  // weights from a symmetric 8-bit per-channel GPTQ layer (LoadGptq)
  // The codes copied 16 bytes into an allocation: aligned as Int8ChannelWeightsView promises,
  // not as cudaMalloc aligns (256 bytes).
  bool shifted_codes = false;
};

// Widths off 4 and 16 in both directions, widths below one padded unit, and the token counts of
// decoding (1), small batches (3, 16, 77) and evaluation windows (512). One workspace serves
// them all in this order, so its buffers grow and its plans are looked up across shapes.
constexpr Case kCases[] = {
    {1, 4096, 4100}, {3, 771, 1003},   {16, 4100, 4096}, {77, 1283, 2047}, {512, 1000, 1032},
    {1, 12288, 4100},  {16, 5, 3},     {3, 2050, 777},   {512, 2052, 515}, {77, 17, 4096},
    {16, 1028, 772, true}, {128, 4096, 1028, true}, {16, 1000, 1032, false, true},
};

std::string Describe(const Case& c) {
  return std::string(c.gptq ? "w8a8 (from GPTQ)" : "w8a8") + " in=" + std::to_string(c.in_features) + " out=" + std::to_string(c.out_features) +
         " tokens=" + std::to_string(c.tokens) + (c.shifted_codes ? " (codes 16-byte aligned only)" : "");
}

// The host's side of one case: inputs, and the references computed from them.
struct HostCase {
  std::vector<float> weight;         // [out, in] (GPTQ cases: the dequantized layer, exact)
  std::vector<uint32_t> qweight, qzeros;  // GPTQ cases: the packed layer
  std::vector<uint16_t> scale_bits;
  std::vector<int32_t> g_idx;
  std::vector<__half> x;             // [tokens, in]
  std::vector<int8_t> codes;         // [out_p, in_p], the layout's own conversion
  std::vector<float> channel_scales; // [out_p]
  std::vector<int8_t> quantized_x;   // [tokens, in_p], zero padding
  std::vector<float> token_scales;   // [tokens]
  std::vector<int32_t> products;     // [tokens, out_p]
  std::vector<double> scaled;        // [tokens, out]: products · token scale · channel scale
  std::vector<double> unquantized;   // [tokens, out]: Σ x · weight in float64

  layout::GptqPackedView GptqView(const Case& c) const {
    return {qweight.data(), qzeros.data(), scale_bits.data(), g_idx.data(), c.in_features, c.out_features, 1, 8};
  }
};

// A symmetric 8-bit per-channel GPTQ layer (zero 128, stored as 127), codes over all of 0..255,
// so q − zero reaches −128; the float weights are its exact dequantization.
void MakeGptqLayer(const Case& c, std::mt19937_64& rng, HostCase& h) {
  const int64_t in = c.in_features, out = c.out_features;
  std::uniform_int_distribution<uint32_t> code(0, 255);
  std::uniform_real_distribution<float> scale(1e-4f, 2e-3f);
  h.qweight.assign(static_cast<size_t>(layout::GptqQweightRows(in, 8) * out), 0);
  h.qzeros.assign(static_cast<size_t>(layout::GptqQzerosCols(out, 8)), 0);
  h.scale_bits.resize(out);
  h.g_idx.assign(in, 0);
  h.weight.resize(static_cast<size_t>(in * out));
  for (int64_t o = 0; o < out; ++o) {
    layout::GptqWriteBits(h.qzeros.data(), 1, o, 8, 128 - layout::kGptqZeroOffset);
    h.scale_bits[o] = __half_raw(__float2half_rn(scale(rng))).x;
    for (int64_t i = 0; i < in; ++i) {
      const uint32_t q = code(rng);
      layout::GptqWriteBits(h.qweight.data() + o, out, i, 8, q);
      h.weight[o * in + i] = HalfBitsToFloat(h.scale_bits[o]) * static_cast<float>(static_cast<int32_t>(q) - 128);
    }
  }
}

// Weights with per-channel magnitudes spread over a decade (so channel scales differ) and one
// all-zero channel; activations roughly normal with every 37th channel 8× larger (outliers set
// the token scale), one all-zero token and one 1000× smaller token.
HostCase MakeHostCase(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  HostCase h;
  const int64_t in = c.in_features, out = c.out_features;
  if (c.gptq) {
    MakeGptqLayer(c, rng, h);
  } else {
    h.weight.resize(static_cast<size_t>(in * out));
    for (int64_t o = 0; o < out; ++o) {
      const float magnitude = o == 0 && out > 1 ? 0.0f : 0.02f * std::pow(10.0f, 0.5f * (uniform(rng) + 1.0f));
      for (int64_t i = 0; i < in; ++i) h.weight[o * in + i] = magnitude * uniform(rng);
    }
  }
  h.x.resize(static_cast<size_t>(c.tokens * in));
  for (int64_t t = 0; t < c.tokens; ++t) {
    const float token_factor = t == 1 ? 0.0f : (t == 2 ? 1e-3f : 1.0f);
    for (int64_t i = 0; i < in; ++i) {
      h.x[t * in + i] = __float2half_rn(token_factor * normal(rng) * (i % 37 == 5 ? 8.0f : 1.0f));
    }
  }

  const int64_t in_p = layout::Int8PaddedWidth(in), out_p = layout::Int8PaddedWidth(out);
  h.codes.resize(static_cast<size_t>(in_p * out_p));
  h.channel_scales.resize(static_cast<size_t>(out_p));
  if (c.gptq) {
    if (const char* why = layout::Int8WeightsFromGptq(h.GptqView(c), HalfBitsToFloat, h.codes.data(),
                                                       h.channel_scales.data())) {
      std::printf("FAIL %s: the host conversion refused the layer: %s\n", Describe(c).c_str(), why);
    }
  } else {
    layout::QuantizeWeightsPerChannelInt8(h.weight.data(), in, out, h.codes.data(), h.channel_scales.data());
  }
  h.quantized_x.assign(static_cast<size_t>(c.tokens * in_p), 0);
  h.token_scales.resize(c.tokens);
  for (int64_t t = 0; t < c.tokens; ++t) {
    const __half* row = h.x.data() + t * in;
    h.token_scales[t] = layout::QuantizeRowSymmetricInt8([row](int64_t i) { return __half2float(row[i]); }, in,
                                                         h.quantized_x.data() + t * in_p);
  }
  h.products.resize(static_cast<size_t>(c.tokens * out_p));
  h.scaled.resize(static_cast<size_t>(c.tokens * out));
  h.unquantized.resize(static_cast<size_t>(c.tokens * out));
  std::vector<double> x_row(in);
  for (int64_t t = 0; t < c.tokens; ++t) {
    const int8_t* q = h.quantized_x.data() + t * in_p;
    for (int64_t i = 0; i < in; ++i) x_row[i] = __half2float(h.x[t * in + i]);
    for (int64_t o = 0; o < out_p; ++o) {
      const int8_t* w = h.codes.data() + o * in_p;
      int32_t sum = 0;  // |sum| ≤ 128 · 127 · in < 2^31 for in < 132000: exact
      for (int64_t i = 0; i < in_p; ++i) sum += int32_t{q[i]} * int32_t{w[i]};
      h.products[t * out_p + o] = sum;
      if (o >= out) continue;
      h.scaled[t * out + o] = static_cast<double>(sum) * h.token_scales[t] * h.channel_scales[o];
      double exact = 0;
      for (int64_t i = 0; i < in; ++i) exact += x_row[i] * h.weight[o * in + i];
      h.unquantized[t * out + o] = exact;
    }
  }
  return h;
}

// Copies the first `count` elements of a device array (the workspace's buffers may be longer).
template <typename T>
CudaStatus DownloadPrefix(const T* device, size_t count, std::vector<T>& host) {
  host.resize(count);
  QSHARD_CUDA_TRY(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
  return CudaStatus();
}

// Fills the output and every intermediate with garbage: NaN for fp16/fp32, 0x7F7F7F7F for the
// products, 0x5A for the codes, so that an element a step fails to write shows.
CudaStatus Poison(const W8A8Workspace& workspace, const Case& c, __half* y) {
  const size_t in_p = layout::Int8PaddedWidth(c.in_features), out_p = layout::Int8PaddedWidth(c.out_features);
  QSHARD_CUDA_TRY(cudaMemset(workspace.quantized_x(), 0x5A, c.tokens * in_p));
  QSHARD_CUDA_TRY(cudaMemset(workspace.token_scales(), 0xFF, c.tokens * sizeof(float)));
  QSHARD_CUDA_TRY(cudaMemset(workspace.products(), 0x7F, c.tokens * out_p * sizeof(int32_t)));
  QSHARD_CUDA_TRY(cudaMemset(y, 0xFF, static_cast<size_t>(c.tokens) * c.out_features * sizeof(__half)));
  return CudaStatus();
}

template <typename T>
size_t CountDifferentBits(const std::vector<T>& a, const std::vector<T>& b) {
  size_t differ = 0;
  for (size_t e = 0; e < a.size(); ++e) differ += std::memcmp(&a[e], &b[e], sizeof(T)) != 0;
  return differ;
}

bool ReportExact(const std::string& what, size_t differ, size_t total) {
  std::printf("%s %s: %zu of %zu differ\n", differ == 0 ? "PASS" : "FAIL", what.c_str(), differ, total);
  return differ == 0;
}

// The fp16 output against the scaled products: float(p) and the two scale products are three
// fp32 roundings (≤ 3·2⁻²⁴ relative, allowed 2⁻²¹), then the fp16 rounding (2⁻¹¹ relative, and
// 2⁻²⁵ absolute where the result is subnormal). NaN (unwritten) fails.
bool CompareOutput(const std::string& what, const std::vector<__half>& y, const HostCase& h) {
  size_t failures = 0;
  double worst = 0, error_squares = 0, quant_squares = 0, ref_squares = 0;
  for (size_t e = 0; e < y.size(); ++e) {
    const double value = __half2float(y[e]);
    const double error = std::fabs(value - h.scaled[e]);
    const double allowance = (std::ldexp(1.0, -11) + std::ldexp(1.0, -21)) * std::fabs(h.scaled[e]) + std::ldexp(1.0, -25);
    if (!(error <= allowance)) ++failures;
    if (std::isfinite(error)) worst = std::fmax(worst, error / allowance);
    error_squares += (value - h.unquantized[e]) * (value - h.unquantized[e]);
    quant_squares += (h.scaled[e] - h.unquantized[e]) * (h.scaled[e] - h.unquantized[e]);
    ref_squares += h.unquantized[e] * h.unquantized[e];
  }
  std::printf("%s %s fp16 output: worst=%.3g of allowance%s; quantization error vs the unquantized fp64 "
              "product: rel_l2=%.3g (of which the exact W8A8 product's %.3g)\n",
              failures == 0 ? "PASS" : "FAIL", what.c_str(), worst,
              failures == 0 ? "" : (" (" + std::to_string(failures) + " elements over)").c_str(),
              std::sqrt(error_squares / ref_squares), std::sqrt(quant_squares / ref_squares));
  return failures == 0;
}

CudaStatus RunCase(const Case& c, uint64_t seed, W8A8Workspace& workspace, bool& passed) {
  const HostCase h = MakeHostCase(c, seed);
  const std::string name = Describe(c);
  DeviceInt8ChannelWeights weights;
  QSHARD_CUDA_RETURN_IF_ERROR(c.gptq ? weights.LoadGptq(h.GptqView(c))
                                     : weights.Load(h.weight.data(), c.in_features, c.out_features));
  Int8ChannelWeightsView view = weights.view();
  DeviceBuffer<int8_t> shifted;
  if (c.shifted_codes) {
    QSHARD_CUDA_RETURN_IF_ERROR(shifted.Allocate(h.codes.size() + 16));
    QSHARD_CUDA_TRY(cudaMemcpy(shifted.get() + 16, view.codes, h.codes.size(), cudaMemcpyDeviceToDevice));
    view.codes = shifted.get() + 16;
  }
  std::vector<int8_t> codes;
  QSHARD_CUDA_RETURN_IF_ERROR(DownloadPrefix(view.codes, h.codes.size(), codes));
  passed &= ReportExact(name + " weight codes (load)", CountDifferentBits(codes, h.codes), codes.size());

  DeviceBuffer<__half> x, y;
  QSHARD_CUDA_RETURN_IF_ERROR(x.Upload(h.x));
  QSHARD_CUDA_RETURN_IF_ERROR(y.Allocate(static_cast<size_t>(c.tokens) * c.out_features));
  QSHARD_CUDA_RETURN_IF_ERROR(workspace.Reserve(c.tokens, c.in_features, c.out_features));
  std::vector<__half> first_y;
  for (const char* run : {"", " again (plan and buffers reused)"}) {
    const std::string label = name + run;
    QSHARD_CUDA_RETURN_IF_ERROR(Poison(workspace, c, y.get()));
    QSHARD_CUDA_RETURN_IF_ERROR(W8A8Matmul(view, x.get(), c.tokens, y.get(), workspace, nullptr));
    QSHARD_CUDA_TRY(cudaDeviceSynchronize());
    std::vector<int8_t> quantized_x;
    std::vector<float> token_scales;
    std::vector<int32_t> products;
    std::vector<__half> out;
    QSHARD_CUDA_RETURN_IF_ERROR(DownloadPrefix(workspace.quantized_x(), h.quantized_x.size(), quantized_x));
    QSHARD_CUDA_RETURN_IF_ERROR(DownloadPrefix(workspace.token_scales(), h.token_scales.size(), token_scales));
    QSHARD_CUDA_RETURN_IF_ERROR(DownloadPrefix(workspace.products(), h.products.size(), products));
    QSHARD_CUDA_RETURN_IF_ERROR(y.Download(out));
    passed &= ReportExact(label + " int8 activations", CountDifferentBits(quantized_x, h.quantized_x), quantized_x.size());
    passed &= ReportExact(label + " token scales", CountDifferentBits(token_scales, h.token_scales), token_scales.size());
    passed &= ReportExact(label + " int32 products", CountDifferentBits(products, h.products), products.size());
    passed &= CompareOutput(label, out, h);
    if (first_y.empty()) {
      first_y = out;
    } else {
      passed &= ReportExact(label + " output same bits as the first run", CountDifferentBits(out, first_y), out.size());
    }
  }
  return CudaStatus();
}

// Shapes and arguments that must be refused before anything reaches the device.
bool CheckContracts() {
  ContractChecks checks;
  alignas(16) static int8_t codes[32] = {};
  alignas(16) static float scales[16] = {};
  alignas(16) static __half halves[16] = {};
  const Int8ChannelWeightsView valid{codes, scales, 4, 4};
  auto with = [&](auto change) {
    Int8ChannelWeightsView changed = valid;
    change(changed);
    return changed;
  };
  checks.ExpectOk("a valid call", ValidateW8A8(valid, halves, 1, halves));
  checks.ExpectError("0 inputs", ValidateW8A8(with([](Int8ChannelWeightsView& v) { v.in_features = 0; }), halves, 1, halves));
  checks.ExpectError("negative outputs",
                     ValidateW8A8(with([](Int8ChannelWeightsView& v) { v.out_features = -4; }), halves, 1, halves));
  checks.ExpectError("−1 tokens", ValidateW8A8(valid, halves, -1, halves));
  checks.ExpectError("65536 tokens", ValidateW8A8(valid, halves, 65536, halves));
  checks.ExpectError("null codes", ValidateW8A8(with([](Int8ChannelWeightsView& v) { v.codes = nullptr; }), halves, 1, halves));
  checks.ExpectError("null x", ValidateW8A8(valid, nullptr, 1, halves));
  checks.ExpectError("codes not 16-byte aligned",
                     ValidateW8A8(with([](Int8ChannelWeightsView& v) { v.codes = codes + 4; }), halves, 1, halves));
  W8A8Workspace workspace;
  checks.ExpectError("W8A8Matmul with null y", W8A8Matmul(valid, halves, 1, nullptr, workspace, nullptr));
  DeviceInt8ChannelWeights weights;
  checks.ExpectError("loading null weights", weights.Load(nullptr, 4, 4));
  // GPTQ layers without the symmetric 8-bit per-channel form are refused before any upload.
  static uint32_t qweight[8] = {0xFF};  // code 255 for input 0 of output 0, the rest 0
  static uint32_t qzeros[2] = {};       // stored 0: zero point 1, so 255 − 1 is outside int8
  static uint16_t scale_bits[16] = {};
  static int32_t g_idx[8] = {};
  const layout::GptqPackedView asymmetric{qweight, qzeros, scale_bits, g_idx, 4, 4, 1, 8};
  checks.ExpectError("a GPTQ code minus its zero outside int8", weights.LoadGptq(asymmetric));
  layout::GptqPackedView grouped = asymmetric;
  grouped.groups = 2;
  checks.ExpectError("a GPTQ layer with two groups", weights.LoadGptq(grouped));
  layout::GptqPackedView four_bits{qweight, qzeros, scale_bits, g_idx, 8, 8, 1, 4};
  checks.ExpectError("a 4-bit GPTQ layer", weights.LoadGptq(four_bits));
  return checks.passed();
}

int Main(int argc, char** argv) {
  uint64_t seed = 20261206;
  bool passed = CheckContracts();
  cudaDeviceProp props{};
  if (const int exit_now = StartCheck(argc, argv, passed, seed, props); exit_now >= 0) return exit_now;
  std::printf("device: %s (sm_%d%d), seed %llu\n", props.name, props.major, props.minor,
              static_cast<unsigned long long>(seed));
  W8A8Workspace workspace;
  return RunCheckCases(
      kCases, seed, passed,
      [&](const Case& c, uint64_t case_seed, bool& case_passed) { return RunCase(c, case_seed, workspace, case_passed); },
      Describe);
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
