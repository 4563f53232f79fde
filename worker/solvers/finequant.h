// FineQuant's rule (anchors.md §1.4, docs/finequant.md): the group size of one weight matrix,
// chosen from the weight alone. Starting from the job's --group-size (-1: per channel), it
// tries finer groups down to kFineQuantMinGroupSize and keeps the one that minimizes the
// rate-distortion cost ½·log2(‖W − Ŵ‖²) + stored bits per weight. The layer method
// (worker/methods/finequant_method.h) applies it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/solvers/solver.h"

namespace qshard {

// The sizes FineQuant refines to: powers of two from 128 down to 32, the group sizes GPU GPTQ
// kernels (Marlin) accept besides per channel. The floor is measured in docs/finequant.md.
inline constexpr int kFineQuantMinGroupSize = 32;
inline constexpr int kFineQuantMaxRefinedGroupSize = 128;

// One group size FineQuant tried on a matrix.
struct GroupSizeCandidate {
  int group_size = -1;           // -1: per channel
  double relative_error = 0.0;   // ‖W − Ŵ‖² / ‖W‖²
  double bits_per_weight = 0.0;  // codes + fp16 scale and bits-wide zero per group
  double cost = 0.0;             // ½·log2(relative_error) + bits_per_weight; the smallest wins
};

// Codes plus each group's fp16 scale and bits-wide zero point, per weight of an [out, in]
// matrix quantized in groups of `group_size` input columns (-1: per channel). g_idx is left out
// (32 bits per input column, the same for every group size).
double StoredBitsPerWeight(int bits, int64_t in, int group_size);

// The group sizes FineQuant tries on a matrix with `in` input columns, coarsest first: the
// spec's group size (-1: per channel), then the powers of two from the largest one that is at
// most half of it (of `in` per channel or when it is wider) and at most
// kFineQuantMaxRefinedGroupSize, down to kFineQuantMinGroupSize.
std::vector<int> FineQuantCandidates(int64_t in, int group_size);

struct FineQuantChoice {
  int group_size = -1;
  std::vector<GroupSizeCandidate> candidates;  // in FineQuantCandidates' order
};

// Quantizes the problem's weight by RTN at each candidate and keeps the cheapest (ties: the
// coarser). act_order and static_groups do not apply, as for RTN.
absl::StatusOr<FineQuantChoice> ChooseFineQuantGroupSize(const LayerProblem& problem, const QuantSpec& spec);

// The finer of two group sizes for a matrix with `in` input columns (-1, or a size ≥ in, is
// one group).
int FinerGroupSize(int a, int b, int64_t in);

}  // namespace qshard
