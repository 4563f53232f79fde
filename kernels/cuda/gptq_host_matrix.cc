// Packing and unpacking go through kernels/layout/gptq_packed.h one value at a time, the way the
// layout is specified, so that the CUDA kernels' bit tricks are checked against it.
#include "kernels/cuda/gptq_host_matrix.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qshard::gpu {
namespace {

layout::GptqPackedView PackedView(const HostGptqMatrix& w) {
  return layout::GptqPackedView::Of(w.qweight.data(), w.qzeros.data(), reinterpret_cast<const uint16_t*>(w.scales.data()),
                                    w.g_idx.data(), w.in_features, w.out_features, w.groups, w.bits);
}

}  // namespace

int HostGptqMatrix::QuantizedValue(int i, int o) const {
  return static_cast<int>(PackedView(*this).Code(i, o));
}

int HostGptqMatrix::Zero(int group, int o) const { return PackedView(*this).Zero(group, o); }

double HostGptqMatrix::Scale(int group, int o) const {
  return static_cast<double>(__half2float(scales[static_cast<size_t>(group) * out_features + o]));
}

double HostGptqMatrix::Weight(int i, int o) const {
  const int group = g_idx[i];
  return Scale(group, o) * (QuantizedValue(i, o) - Zero(group, o));
}

GptqMatrixView HostGptqMatrix::View(const int32_t* qweight_device, const int32_t* qzeros_device,
                                    const __half* scales_device,
                                    const int32_t* g_idx_device) const {
  GptqMatrixView view;
  view.qweight = qweight_device;
  view.qzeros = qzeros_device;
  view.scales = scales_device;
  view.g_idx = g_idx_device;
  view.in_features = in_features;
  view.out_features = out_features;
  view.bits = bits;
  view.groups = groups;
  return view;
}

HostGptqMatrix RandomGptqMatrix(int in_features, int out_features, int bits, int group_size,
                                bool act_order, std::mt19937_64& rng) {
  HostGptqMatrix w;
  w.in_features = in_features;
  w.out_features = out_features;
  w.bits = bits;
  const int size = group_size < 0 ? in_features : group_size;
  w.groups = (in_features + size - 1) / size;
  std::uniform_int_distribution<uint32_t> code(0, (1u << bits) - 1);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f);

  // Packed through the layout's own writer; words are filled as uint32 and stored as int32.
  const int64_t zero_words = layout::GptqQzerosCols(out_features, bits);
  std::vector<uint32_t> qweight(layout::GptqQweightRows(in_features, bits) * out_features, 0);
  for (int i = 0; i < in_features; ++i)
    for (int o = 0; o < out_features; ++o) layout::GptqWriteBits(qweight.data() + o, out_features, i, bits, code(rng));
  std::vector<uint32_t> qzeros(w.groups * zero_words, 0);
  for (int g = 0; g < w.groups; ++g)
    for (int o = 0; o < out_features; ++o) layout::GptqWriteBits(qzeros.data() + g * zero_words, 1, o, bits, code(rng));
  w.qweight.assign(qweight.begin(), qweight.end());
  w.qzeros.assign(qzeros.begin(), qzeros.end());
  w.scales.resize(static_cast<size_t>(w.groups) * out_features);
  for (__half& s : w.scales) s = __float2half(scale(rng));

  // Group of the j-th input in quantization order is j / size; act-order quantizes the inputs
  // in a permuted order, so input order[j] gets group j / size.
  std::vector<int> order(in_features);
  std::iota(order.begin(), order.end(), 0);
  if (act_order) std::shuffle(order.begin(), order.end(), rng);
  w.g_idx.resize(in_features);
  for (int j = 0; j < in_features; ++j) w.g_idx[order[j]] = j / size;
  return w;
}

std::vector<__half> RandomActivations(int tokens, int in_features, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<__half> x(static_cast<size_t>(tokens) * in_features);
  for (__half& v : x) v = __float2half(normal(rng));
  return x;
}

ReferenceProduct ReferenceGptqMatmul(const HostGptqMatrix& w, const std::vector<__half>& x,
                                     int tokens) {
  const int in = w.in_features;
  const int out = w.out_features;
  ReferenceProduct ref;
  ref.y.assign(static_cast<size_t>(tokens) * out, 0.0);
  ref.term_norm.assign(static_cast<size_t>(tokens) * out, 0.0);
  // Input by input: unpack one column of W (all outputs), then add its terms for every token.
  std::vector<double> column(out);
  for (int i = 0; i < in; ++i) {
    for (int o = 0; o < out; ++o) column[o] = w.Weight(i, o);
    for (int t = 0; t < tokens; ++t) {
      const double xi = static_cast<double>(__half2float(x[static_cast<size_t>(t) * in + i]));
      double* y = &ref.y[static_cast<size_t>(t) * out];
      double* squares = &ref.term_norm[static_cast<size_t>(t) * out];
      for (int o = 0; o < out; ++o) {
        const double term = xi * column[o];
        y[o] += term;
        squares[o] += term * term;
      }
    }
  }
  for (double& v : ref.term_norm) v = std::sqrt(v);
  return ref;
}

}  // namespace qshard::gpu
