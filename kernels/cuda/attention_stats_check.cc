// qshard_cuda_attention_stats_check: checks aespa's attention statistics on the device
// (attention_stats_device.h) against the float64 host reference (attention_stats_reference.h)
// on random windows of awkward shapes (AttentionStatsCheckCases: OPT-like and LLaMA-like GQA 2:1
// and 4:1, widths not multiples of 32, 1 to 640 tokens), two windows per case and length: every
// sum within the reference's tolerances, the token counts exact, and a second run on fresh
// statistics giving the same bytes, and the values' sums taken in slices of the key/value heads
// (one pass over the windows per slice) giving those bytes too. Exit status: 0 all passed, 1 a check failed, 2 a CUDA error
// stopped the run, 77 no CUDA device (ctest reports the test as skipped).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/attention_stats_device.h"
#include "kernels/cuda/attention_stats_reference.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/program_setup.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {
namespace {

CudaStatus Download(const DeviceHessianSum& sum, std::vector<double>& host) {
  host.resize(static_cast<size_t>(sum.dim()) * sum.dim());
  QSHARD_CUDA_TRY(cudaMemcpy(host.data(), sum.sum(), host.size() * sizeof(double), cudaMemcpyDeviceToHost));
  return CudaStatus();
}

// The sums of `stats` on the host, values then queries then keys, head by head, into `sums`
// (3·kv_heads of them): the values' of the heads held only.
CudaStatus DownloadSums(const DeviceAttentionStats& stats, std::vector<std::vector<double>>& sums) {
  const AttentionStatsDims& d = stats.dims();
  sums.resize(3 * d.kv_heads);
  const KvHeadRange& held = stats.value_heads();
  for (int64_t g = held.first; g < held.first + held.count; ++g)
    QSHARD_CUDA_RETURN_IF_ERROR(Download(stats.values(g), sums[g * 3]));
  for (int64_t g = 0; g < d.kv_heads; ++g) {
    QSHARD_CUDA_RETURN_IF_ERROR(Download(stats.queries(g), sums[g * 3 + 1]));
    QSHARD_CUDA_RETURN_IF_ERROR(Download(stats.keys(g), sums[g * 3 + 2]));
  }
  return CudaStatus();
}

// Both windows into `stats` (made for them), as `sums` say.
CudaStatus AddWindows(const SolverContext& context, int64_t tokens, const std::vector<AttentionStatsWindow>& windows,
                      WindowSums sums, DeviceAttentionStats& stats) {
  for (const AttentionStatsWindow& w : windows) {
    DeviceBuffer<float> x, q, k;
    QSHARD_CUDA_RETURN_IF_ERROR(x.Upload(w.x));
    QSHARD_CUDA_RETURN_IF_ERROR(q.Upload(w.q));
    QSHARD_CUDA_RETURN_IF_ERROR(k.Upload(w.k));
    QSHARD_CUDA_RETURN_IF_ERROR(stats.AddWindow(context, x.get(), q.get(), k.get(), tokens, sums));
    QSHARD_CUDA_TRY(cudaStreamSynchronize(context.stream()));  // before the inputs are freed
  }
  return CudaStatus();
}

// Both windows into fresh statistics on the device.
CudaStatus RunWindows(const SolverContext& context, const AttentionStatsDims& d, int64_t tokens,
                      const std::vector<AttentionStatsWindow>& windows, DeviceAttentionStats& stats) {
  QSHARD_CUDA_RETURN_IF_ERROR(stats.Reset(d, context.stream()));
  return AddWindows(context, tokens, windows, WindowSums::kAll, stats);
}

// Every sum as DownloadSums gives it, the values' taken `per_slice` key/value heads at a time: the
// first slice with the queries and keys, each later one in a pass of its own over the windows.
CudaStatus RunInSlices(const SolverContext& context, const AttentionStatsDims& d, int64_t tokens,
                       const std::vector<AttentionStatsWindow>& windows, int64_t per_slice,
                       std::vector<std::vector<double>>& sums) {
  DeviceAttentionStats stats;
  QSHARD_CUDA_RETURN_IF_ERROR(stats.Reset(d, {0, std::min(per_slice, d.kv_heads)}, context.stream()));
  QSHARD_CUDA_RETURN_IF_ERROR(AddWindows(context, tokens, windows, WindowSums::kAll, stats));
  QSHARD_CUDA_RETURN_IF_ERROR(DownloadSums(stats, sums));
  for (int64_t first = per_slice; first < d.kv_heads; first += per_slice) {
    QSHARD_CUDA_RETURN_IF_ERROR(stats.ResetValues({first, std::min(per_slice, d.kv_heads - first)}, context.stream()));
    QSHARD_CUDA_RETURN_IF_ERROR(AddWindows(context, tokens, windows, WindowSums::kValuesOnly, stats));
    for (int64_t g = first; g < first + stats.value_heads().count; ++g)
      QSHARD_CUDA_RETURN_IF_ERROR(Download(stats.values(g), sums[g * 3]));
  }
  return CudaStatus();
}

bool SameBytes(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  bool same = a.size() == b.size();
  for (size_t s = 0; same && s < a.size(); ++s)
    same = a[s].size() == b[s].size() && std::memcmp(a[s].data(), b[s].data(), a[s].size() * sizeof(double)) == 0;
  return same;
}

CudaStatus RunCase(const SolverContext& context, const AttentionStatsCase& c, int64_t tokens, uint64_t seed,
                   bool& passed) {
  const AttentionStatsDims& d = c.dims;
  const std::string label = std::string(c.name) + ", " + std::to_string(tokens) + " tokens";
  const auto expect = [&](bool condition, const std::string& what) {
    if (!condition) std::printf("FAIL %s: %s\n", label.c_str(), what.c_str());
    passed &= condition;
  };
  std::vector<AttentionStatsWindow> windows;
  ReferenceAttentionStats reference = EmptyReferenceStats(d);
  for (uint64_t w = 0; w < 2; ++w) {
    windows.push_back(RandomAttentionStatsWindow(d, tokens, seed * 2 + w));
    AddReferenceWindow(d, windows.back().x.data(), windows.back().q.data(), windows.back().k.data(), tokens,
                       reference);
  }
  DeviceAttentionStats first, second;
  QSHARD_CUDA_RETURN_IF_ERROR(RunWindows(context, d, tokens, windows, first));
  QSHARD_CUDA_RETURN_IF_ERROR(RunWindows(context, d, tokens, windows, second));
  std::vector<std::vector<double>> sums, again;
  QSHARD_CUDA_RETURN_IF_ERROR(DownloadSums(first, sums));
  QSHARD_CUDA_RETURN_IF_ERROR(DownloadSums(second, again));

  SumDeviation worst;
  for (int64_t g = 0; g < d.kv_heads; ++g) {
    const std::vector<double>* references[] = {&reference.values[g], &reference.queries[g], &reference.keys[g]};
    const int64_t dims[] = {d.hidden, d.head_dim, d.head_dim};
    const char* names[] = {"values", "queries", "keys"};
    for (int s = 0; s < 3; ++s) {
      const SumDeviation dev = CompareSum(sums[g * 3 + s].data(), *references[s], dims[s]);
      expect(WithinStatsTolerance(dev), std::string(names[s]) + " of key/value head " + std::to_string(g) +
                                            " outside the tolerances");
      worst.worst_scaled = std::max(worst.worst_scaled, dev.worst_scaled);
      worst.relative_frobenius = std::max(worst.relative_frobenius, dev.relative_frobenius);
    }
    expect(first.values(g).tokens() == reference.value_tokens && first.queries(g).tokens() == reference.query_tokens &&
               first.keys(g).tokens() == reference.key_tokens,
           "token counts of key/value head " + std::to_string(g));
  }
  expect(SameBytes(sums, again), "a second run on fresh statistics gave different bytes");
  // One head per slice, and slices of about half the heads (an uneven last slice where odd).
  for (const int64_t per_slice : {int64_t{1}, (d.kv_heads + 1) / 2}) {
    if (per_slice >= d.kv_heads) continue;
    std::vector<std::vector<double>> sliced;
    QSHARD_CUDA_RETURN_IF_ERROR(RunInSlices(context, d, tokens, windows, per_slice, sliced));
    expect(SameBytes(sums, sliced), "the values' sums in slices of " + std::to_string(per_slice) +
                                        " key/value head(s) differ from the whole's");
  }
  std::printf("%s: worst element %.2e of sqrt(R_ii R_jj), relative Frobenius %.2e\n", label.c_str(),
              worst.worst_scaled, worst.relative_frobenius);
  return CudaStatus();
}

// Bad shapes and calls come back as errors, not crashes; runs without a device.
bool CheckContracts() {
  ContractChecks checks;
  DeviceAttentionStats stats;
  checks.ExpectError("heads not a multiple of kv_heads", stats.Reset({64, 6, 4, 16}, nullptr));
  checks.ExpectError("head_dim 0", stats.Reset({64, 4, 4, 0}, nullptr));
  SolverContext unused;
  float dummy = 0.0f;
  checks.ExpectError("a window before Reset", stats.AddWindow(unused, &dummy, &dummy, &dummy, 1));
  checks.ExpectError("values' heads before Reset", stats.ResetValues({0, 1}, nullptr));
  checks.ExpectError("an empty range of values' heads", stats.Reset({64, 4, 2, 16}, {0, 0}, nullptr));
  checks.ExpectError("values' heads past the last", stats.Reset({64, 4, 2, 16}, {1, 2}, nullptr));
  return checks.passed();
}

int Main(int argc, char** argv) {
  return RunContextCheck(argc, argv, CheckContracts(), 20261206,
                         [](const SolverContext& context, uint64_t seed, bool& passed) {
                           return RunCaseLengths(AttentionStatsCheckCases(), seed, passed,
                                                 [&](const AttentionStatsCase& c, int64_t tokens, uint64_t s, bool& p) {
                                                   return RunCase(context, c, tokens, s, p);
                                                 });
                         });
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
