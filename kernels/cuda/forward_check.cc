// qshard_cuda_forward_check: checks the device decoder layer (layer_forward.h) against the
// float64 host reference (layer_forward_reference.h) on random layers of awkward shapes
// (ForwardCheckCases: widths not multiples of 32, odd head counts, GQA 2:1 and 4:1, OPT pre- and
// post-LN, biases or none; 1, 7, 129 and 300 tokens): the output and the four captured group
// inputs within the reference's tolerances, identical bytes from a second run on a fresh
// scratch, the in-place form, the device statistics (hessian_device.h) fed straight from the
// captured inputs, the stage-by-stage entry points (a group's input computed again after a
// weight changed; stages out of order refused), and decoding with a key/value cache
// (RunLayerCachedOnDevice: half the window as a prompt, then one token per call, against the same
// reference output; a negative position refused). Exit status: 0 all passed, 1 a check failed,
// 2 a CUDA error stopped the run, 77 no CUDA device (ctest reports the test as skipped).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gptq_solver_reference.h"
#include "kernels/cuda/hessian_device.h"
#include "kernels/cuda/layer_forward.h"
#include "kernels/cuda/layer_forward_reference.h"
#include "kernels/cuda/program_setup.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {
namespace {

// The statistics of a captured input against the float64 sum of the same float32 values: the
// tolerance qshard_cuda_solver_check derives for one float32 window product (≤ 1024 tokens).
constexpr double kStatElementTolerance = 1e-5;

const char* const kGroupNames[kLayerGroupCount] = {"q/k/v input", "o input", "gate/up input", "down input"};

// The device copies of a HostLayer and the DeviceLayerWeights that point into them (moving a
// DeviceBuffer keeps its device pointer, so the vector may grow).
struct DeviceLayer {
  std::vector<DeviceBuffer<float>> buffers;
  DeviceLayerWeights weights;

  CudaStatus Put(const std::vector<float>& host, const float*& pointer) {
    pointer = nullptr;
    if (host.empty()) return CudaStatus();
    buffers.emplace_back();
    QSHARD_CUDA_RETURN_IF_ERROR(buffers.back().Upload(host));
    pointer = buffers.back().get();
    return CudaStatus();
  }
  CudaStatus PutLinear(const HostLinear& host, DeviceLinear& linear) {
    QSHARD_CUDA_RETURN_IF_ERROR(Put(host.weight, linear.weight));
    return Put(host.bias, linear.bias);
  }
  CudaStatus Upload(const HostLayer& l) {
    weights.arch = l.arch;
    QSHARD_CUDA_RETURN_IF_ERROR(PutLinear(l.q, weights.q));
    QSHARD_CUDA_RETURN_IF_ERROR(PutLinear(l.k, weights.k));
    QSHARD_CUDA_RETURN_IF_ERROR(PutLinear(l.v, weights.v));
    QSHARD_CUDA_RETURN_IF_ERROR(PutLinear(l.o, weights.o));
    QSHARD_CUDA_RETURN_IF_ERROR(PutLinear(l.up, weights.up));
    QSHARD_CUDA_RETURN_IF_ERROR(PutLinear(l.gate, weights.gate));
    QSHARD_CUDA_RETURN_IF_ERROR(PutLinear(l.down, weights.down));
    QSHARD_CUDA_RETURN_IF_ERROR(Put(l.norm1_weight, weights.norm1_weight));
    QSHARD_CUDA_RETURN_IF_ERROR(Put(l.norm1_bias, weights.norm1_bias));
    QSHARD_CUDA_RETURN_IF_ERROR(Put(l.norm2_weight, weights.norm2_weight));
    return Put(l.norm2_bias, weights.norm2_bias);
  }
};

CudaStatus DownloadFloats(const float* device, size_t count, std::vector<float>& host) {
  host.resize(count);
  QSHARD_CUDA_TRY(cudaMemcpy(host.data(), device, count * sizeof(float), cudaMemcpyDeviceToHost));
  return CudaStatus();
}

// One run's output and group inputs on the host.
struct RunResult {
  std::vector<float> out;
  std::vector<float> groups[kLayerGroupCount];
};

// Runs the layer on `in` into `out` (poisoned with NaN first unless in place) and downloads
// the output and the captured group inputs.
CudaStatus Run(const SolverContext& context, const DeviceLayerWeights& w, const float* in, float* out, int64_t tokens,
               LayerForwardScratch& scratch, RunResult& result) {
  const size_t hidden_count = static_cast<size_t>(tokens * w.arch.hidden);
  if (out != in) QSHARD_CUDA_TRY(cudaMemsetAsync(out, 0xff, hidden_count * sizeof(float), context.stream()));
  QSHARD_CUDA_RETURN_IF_ERROR(RunLayerForwardOnDevice(context, w, in, out, tokens, scratch));
  QSHARD_CUDA_TRY(cudaStreamSynchronize(context.stream()));
  QSHARD_CUDA_RETURN_IF_ERROR(DownloadFloats(out, hidden_count, result.out));
  for (int g = 0; g < kLayerGroupCount; ++g) {
    const LayerGroup group = static_cast<LayerGroup>(g);
    QSHARD_CUDA_RETURN_IF_ERROR(DownloadFloats(scratch.group_input(group),
                                               static_cast<size_t>(tokens * GroupWidth(w.arch, group)),
                                               result.groups[g]));
  }
  return CudaStatus();
}

bool SameBytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool SameBytes(const RunResult& a, const RunResult& b) {
  bool same = SameBytes(a.out, b.out);
  for (int g = 0; g < kLayerGroupCount; ++g) same &= SameBytes(a.groups[g], b.groups[g]);
  return same;
}

// DeviceHessianSum fed from the captured input of each group on the device, against the
// float64 sum of the same (downloaded) values.
CudaStatus CheckStatistics(const SolverContext& context, const LayerArchitecture& a, int64_t tokens,
                           const LayerForwardScratch& scratch, const RunResult& captured, double& worst) {
  for (int g = 0; g < kLayerGroupCount; ++g) {
    const LayerGroup group = static_cast<LayerGroup>(g);
    const int64_t dim = GroupWidth(a, group);
    DeviceHessianSum hessian;
    QSHARD_CUDA_RETURN_IF_ERROR(hessian.Reset(dim, context.stream()));
    QSHARD_CUDA_RETURN_IF_ERROR(hessian.AddWindow(context, scratch.group_input(group), tokens));
    std::vector<double> sum(dim * dim), reference(dim * dim, 0.0);
    QSHARD_CUDA_TRY(cudaMemcpy(sum.data(), hessian.sum(), sum.size() * sizeof(double), cudaMemcpyDeviceToHost));
    ReferenceAddWindow(captured.groups[g].data(), tokens, dim, reference);
    for (int64_t i = 0; i < dim; ++i) {
      for (int64_t j = 0; j < dim; ++j) {
        const double bound = std::sqrt(reference[i * dim + i] * reference[j * dim + j]);
        const double d = std::fabs(sum[i * dim + j] - reference[i * dim + j]);
        worst = std::max(worst, bound > 0.0 ? d / bound : (d == 0.0 ? 0.0 : INFINITY));
      }
    }
  }
  return CudaStatus();
}

// Decoding with a key/value cache (RunLayerCachedOnDevice): the first half of the window as the
// prompt, then one token per call at its position; every row of the window, downloaded.
CudaStatus DecodeWithCache(const SolverContext& context, const DeviceLayerWeights& w, const std::vector<float>& hidden,
                           int64_t tokens, std::vector<float>& decoded) {
  const LayerArchitecture& a = w.arch;
  DeviceBuffer<float> k_cache, v_cache, rows;
  QSHARD_CUDA_RETURN_IF_ERROR(k_cache.Allocate(static_cast<size_t>(tokens * a.kv_width())));
  QSHARD_CUDA_RETURN_IF_ERROR(v_cache.Allocate(static_cast<size_t>(tokens * a.kv_width())));
  QSHARD_CUDA_RETURN_IF_ERROR(rows.Upload(hidden));
  LayerForwardScratch scratch;
  for (int64_t first = 0; first < tokens;) {
    const int64_t count = first == 0 ? (tokens + 1) / 2 : 1;
    QSHARD_CUDA_RETURN_IF_ERROR(RunLayerCachedOnDevice(context, w, rows.get() + first * a.hidden, count, first,
                                                       k_cache.get(), v_cache.get(), scratch));
    first += count;
  }
  if (RunLayerCachedOnDevice(context, w, rows.get(), 1, -1, k_cache.get(), v_cache.get(), scratch).ok())
    return CudaStatus::Error("RunLayerCachedOnDevice took a negative position");
  QSHARD_CUDA_TRY(cudaStreamSynchronize(context.stream()));
  return DownloadFloats(rows.get(), hidden.size(), decoded);
}

CudaStatus RunCase(const SolverContext& context, const ForwardCase& c, int64_t tokens, uint64_t seed,
                   LayerForwardScratch& reused_scratch, bool& passed) {
  const LayerArchitecture& a = c.arch;
  const std::string label = std::string(c.name) + ", " + std::to_string(tokens) + " tokens";
  const auto expect = [&](bool condition, const std::string& what) {
    if (!condition) std::printf("FAIL %s: %s\n", label.c_str(), what.c_str());
    passed &= condition;
  };
  std::mt19937_64 rng(seed);
  const HostLayer layer = RandomHostLayer(a, rng);
  const std::vector<float> hidden = RandomHidden(tokens, a.hidden, rng);
  const ReferenceLayerResult reference = ReferenceLayerForward(layer, hidden, tokens);

  DeviceLayer device;
  QSHARD_CUDA_RETURN_IF_ERROR(device.Upload(layer));
  DeviceBuffer<float> in, out, second_out, in_place;
  QSHARD_CUDA_RETURN_IF_ERROR(in.Upload(hidden));
  QSHARD_CUDA_RETURN_IF_ERROR(in_place.Upload(hidden));
  QSHARD_CUDA_RETURN_IF_ERROR(out.Allocate(hidden.size()));
  QSHARD_CUDA_RETURN_IF_ERROR(second_out.Allocate(hidden.size()));

  // The scratch reused across the case's window lengths (grown, its old contents stale), then a
  // fresh one: the same bytes either way.
  RunResult first, second, third;
  QSHARD_CUDA_RETURN_IF_ERROR(Run(context, device.weights, in.get(), out.get(), tokens, reused_scratch, first));
  LayerForwardScratch fresh;
  QSHARD_CUDA_RETURN_IF_ERROR(Run(context, device.weights, in.get(), second_out.get(), tokens, fresh, second));
  QSHARD_CUDA_RETURN_IF_ERROR(Run(context, device.weights, in_place.get(), in_place.get(), tokens, fresh, third));

  std::printf("%s\n", label.c_str());
  for (int g = 0; g <= kLayerGroupCount; ++g) {
    const bool output = g == kLayerGroupCount;
    const Deviation d = Compare(output ? first.out : first.groups[g], output ? reference.out : reference.group_inputs[g]);
    const char* name = output ? "output" : kGroupNames[g];
    std::printf("  %-14s max/rms %.2e  relative Frobenius %.2e\n", name, d.max_over_rms, d.relative_frobenius);
    expect(WithinForwardTolerance(d), std::string(name) + " outside the tolerances");
  }
  expect(SameBytes(first, second), "a second run on a fresh scratch gave different bytes");
  const Deviation in_place_deviation = Compare(third.out, reference.out);
  expect(WithinForwardTolerance(in_place_deviation), "the in-place output is outside the tolerances");
  std::printf("  in place: max/rms %.2e, %s the out-of-place bytes\n", in_place_deviation.max_over_rms,
              SameBytes(third.out, first.out) ? "same as" : "differs from");

  // The q and k aespa's statistics read from the scratch (attention_stats_device.h): after RoPE.
  std::vector<float> attention_q, attention_k;
  QSHARD_CUDA_RETURN_IF_ERROR(DownloadFloats(fresh.attention_queries(), tokens * a.q_width(), attention_q));
  QSHARD_CUDA_RETURN_IF_ERROR(DownloadFloats(fresh.attention_keys(), tokens * a.kv_width(), attention_k));
  expect(WithinForwardTolerance(Compare(attention_q, reference.attention_q)) &&
             WithinForwardTolerance(Compare(attention_k, reference.attention_k)),
         "the scratch's attention q or k is outside the tolerances");

  std::vector<float> decoded;
  QSHARD_CUDA_RETURN_IF_ERROR(DecodeWithCache(context, device.weights, hidden, tokens, decoded));
  const Deviation cached = Compare(decoded, reference.out);
  std::printf("  decoded with a key/value cache (half a prompt, then a token per call): max/rms %.2e  "
              "relative Frobenius %.2e\n",
              cached.max_over_rms, cached.relative_frobenius);
  expect(WithinForwardTolerance(cached), "the output decoded with a key/value cache is outside the tolerances");

  double worst = 0.0;
  QSHARD_CUDA_RETURN_IF_ERROR(CheckStatistics(context, a, tokens, fresh, third, worst));
  std::printf("  statistics from the captured inputs: worst element %.2e of sqrt(S_ii S_jj)\n", worst);
  expect(worst <= kStatElementTolerance, "statistics of the captured inputs differ from their float64 sum");

  // True-sequential use: v replaced (as if quantized), group 1's input computed again from the
  // group 0 input the scratch holds, against the reference layer with that v.
  HostLayer changed = layer;
  for (float& value : changed.v.weight) value = -0.5f * value;
  DeviceLayer changed_v;
  DeviceLayerWeights changed_weights = device.weights;
  QSHARD_CUDA_RETURN_IF_ERROR(changed_v.Put(changed.v.weight, changed_weights.v.weight));
  QSHARD_CUDA_RETURN_IF_ERROR(
      ComputeGroupInputOnDevice(context, changed_weights, LayerGroup::kOutInput, nullptr, tokens, fresh));
  std::vector<float> recomputed;
  QSHARD_CUDA_TRY(cudaStreamSynchronize(context.stream()));
  QSHARD_CUDA_RETURN_IF_ERROR(
      DownloadFloats(fresh.group_input(LayerGroup::kOutInput), static_cast<size_t>(tokens * a.q_width()), recomputed));
  const Deviation staged = Compare(recomputed, ReferenceLayerForward(changed, hidden, tokens).group_inputs[1]);
  std::printf("  o input recomputed with another v: max/rms %.2e  relative Frobenius %.2e\n", staged.max_over_rms,
              staged.relative_frobenius);
  expect(WithinForwardTolerance(staged), "the o input recomputed stage by stage is outside the tolerances");

  // Stages out of order are refused: on a fresh scratch nothing precedes group 1 or output 3,
  // and a window length other than the one computed does not match.
  LayerForwardScratch empty;
  expect(!ComputeGroupInputOnDevice(context, device.weights, LayerGroup::kOutInput, nullptr, tokens, empty).ok(),
         "group 1's input computed before group 0's");
  expect(!AddGroupOutputOnDevice(context, device.weights, LayerGroup::kDownInput, out.get(), tokens, empty).ok(),
         "group 3's output added before its input was computed");
  expect(!AddGroupOutputOnDevice(context, device.weights, LayerGroup::kMlpInput, out.get(), tokens, fresh).ok(),
         "an output added for group 2, which has none");
  expect(!ComputeGroupInputOnDevice(context, device.weights, LayerGroup::kDownInput, nullptr, tokens + 1, fresh).ok(),
         "group 3's input computed from group 2's of another window length");
  return CudaStatus();
}

// Bad layers come back as errors, not crashes; runs without a device.
bool CheckContracts() {
  ContractChecks checks;
  LayerArchitecture good;  // LLaMA with biases: every pointer of DeviceLayerWeights but OPT's norm biases
  good.hidden = 64;
  good.ffn = 96;
  good.heads = 4;
  good.kv_heads = 2;
  good.head_dim = 16;
  good.attention_bias = good.mlp_bias = true;
  LayerArchitecture a = good;
  a.kv_heads = 5;
  checks.ExpectError("heads not a multiple of kv_heads", ValidateLayerArchitecture(a));
  a = good;
  a.head_dim = 15;
  checks.ExpectError("odd head_dim with RoPE", ValidateLayerArchitecture(a));
  a = good;
  a.kind = LayerKind::kOpt;  // heads · head_dim = hidden, as OPT needs, but GQA 2:1
  checks.ExpectError("OPT with GQA", ValidateLayerArchitecture(a));
  a.kv_heads = a.heads;
  checks.ExpectOk("an OPT layer", ValidateLayerArchitecture(a));
  a.head_dim = 32;
  checks.ExpectError("OPT with heads · head_dim != hidden", ValidateLayerArchitecture(a));
  a = good;
  a.ffn = 0;
  checks.ExpectError("ffn 0", ValidateLayerArchitecture(a));

  float dummy = 0.0f;
  DeviceLayerWeights w;
  w.arch = good;
  for (DeviceLinear* linear : {&w.q, &w.k, &w.v, &w.o, &w.up, &w.gate, &w.down}) *linear = {&dummy, &dummy};
  w.norm1_weight = w.norm2_weight = &dummy;
  checks.ExpectOk("a complete layer", ValidateDeviceLayer(w));
  DeviceLayerWeights broken = w;
  broken.gate.weight = nullptr;
  checks.ExpectError("a LLaMA layer without gate", ValidateDeviceLayer(broken));
  broken = w;
  broken.q.bias = nullptr;
  checks.ExpectError("a missing bias", ValidateDeviceLayer(broken));
  broken = w;
  broken.norm1_bias = &dummy;
  checks.ExpectError("an RMSNorm with a bias", ValidateDeviceLayer(broken));
  SolverContext unused;
  LayerForwardScratch scratch;
  checks.ExpectError("0 tokens", RunLayerForwardOnDevice(unused, w, &dummy, &dummy, 0, scratch));
  float hidden[2] = {};
  checks.ExpectError("hidden_out overlapping hidden_in", RunLayerForwardOnDevice(unused, w, hidden, hidden + 1, 1, scratch));
  checks.ExpectError("a context without cuBLAS", RunLayerForwardOnDevice(unused, w, hidden, hidden, 1, scratch));
  return checks.passed();
}

int Main(int argc, char** argv) {
  return RunContextCheck(argc, argv, CheckContracts(), 20261206,
                         [](const SolverContext& context, uint64_t seed, bool& passed) {
                           const ForwardCase* current = nullptr;
                           LayerForwardScratch scratch;  // reused across a case's window lengths
                           return RunCaseLengths(ForwardCheckCases(), seed, passed,
                                                 [&](const ForwardCase& c, int64_t tokens, uint64_t s, bool& p) {
                                                   if (&c != current) {
                                                     scratch = LayerForwardScratch();
                                                     current = &c;
                                                   }
                                                   return RunCase(context, c, tokens, s, scratch, p);
                                                 });
                         });
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
