// The GPTQ (AutoGPTQ, "v1" zero-point convention) tensors of one linear layer — qweight,
// qzeros, scales, g_idx — and the conversions from and back to QuantizedWeight (the writer's
// and the loader's side). The bit layout is defined in kernels/layout/gptq_packed.h and
// documented in docs/checkpoint-format.md.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/layout/gptq_packed.h"
#include "worker/quant/quantized_weight.h"

namespace qshard {

struct GptqLinearTensors {
  int bits = 0;
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t groups = 0;
  std::vector<int32_t> qweight;  // [in_features * bits / 32, out_features]
  std::vector<int32_t> qzeros;   // [groups, out_features * bits / 32], each value zero − 1
  std::vector<uint16_t> scales;  // fp16 bit patterns, [groups, out_features]
  std::vector<int32_t> g_idx;    // [in_features]
};

// OK when the layout can hold a layer of this shape: bits ∈ {2, 3, 4, 8}, and in_features·bits
// and out_features·bits multiples of 32 (3 bits: both multiples of 32). No padding is done.
absl::Status CheckGptqLayout(int bits, int64_t in_features, int64_t out_features);

// Packs a quantized weight. Fails (naming the value) on shapes the layout cannot hold, a
// zero point of 0 (v1 stores zero − 1), scales that are not fp16 values, or a weight that
// still carries Z-Fold column multipliers (fold them first).
absl::StatusOr<GptqLinearTensors> PackGptq(const QuantizedWeight& weight);

// OK when the four tensors have the sizes their shape fields imply (the values are not checked).
absl::Status CheckGptqTensors(const GptqLinearTensors& tensors);

// The four tensors as the kernels read them (kernels/layout/gptq_packed.h); valid while
// `tensors` lives and is not resized.
layout::GptqPackedView PackedView(const GptqLinearTensors& tensors);

// The loader's side: codes, zero points (stored + 1) and fp16 scales back, validated.
absl::StatusOr<QuantizedWeight> UnpackGptq(const GptqLinearTensors& tensors);

}  // namespace qshard
