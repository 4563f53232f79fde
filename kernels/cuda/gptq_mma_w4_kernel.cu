// The w4a16 tensor-core kernel on the repacked layout (kernels/layout/gptq_mma_w4.h). What it
// does per weight is all that matters for a decoding GEMV, so the layout moved everything else
// to load time:
//   - each lane's A fragments for a k-tile (16 columns × 64 inputs) are one 16-byte load, and a
//     warp's k-tile is 512 contiguous bytes: weights go straight from global memory to the
//     registers that unpack them, with a ring of kDepth k-tiles in flight per lane (no shared
//     memory round trip: each weight is used by exactly the lane that loads it);
//   - one mask per A register (the nibble order of the layout), the fp16 "1024 + q" trick,
//     and one mma per 16 inputs per 8 tokens; the lane's activations for the k-tile are 16
//     consecutive halves (two 16-byte shared loads), already in B-fragment order;
//   - a block is 8 warps on 8 adjacent column tiles (128 outputs) sharing one split of the
//     inputs: the split's activations (gathered through perm for act-order) and the group
//     parameters of its column tiles are staged in shared memory while the first weight loads
//     fly; splits are chosen with the same wave model as GptqMatmul (ChooseSplits) so that
//     skinny layers still fill every SM, and meet through GptqWorkspace's atomics.
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/cuda/gptq_kernels.cuh"
#include "kernels/cuda/gptq_mma_w4.h"
#include "kernels/cuda/ptx.cuh"

namespace qshard::gpu {
namespace {

using internal::CeilDiv;
using internal::kThreads;
using internal::kWarps;
namespace lay = layout;

constexpr int kDepth = 4;                  // k-tiles in flight per lane
constexpr int kSharedBudget = 48 * 1024;   // no opt-in needed, several blocks per SM
constexpr int kMaxSplitTiles = 128;        // 8192 inputs
constexpr int kXPadHalves = 8;             // token rows 16 bytes apart modulo 128: no conflicts
constexpr int kParamBytesPerGroup = lay::kMmaParamWords * 4;
static_assert(kWarps * lay::kMmaTileColumns == internal::kTileColumns, "a block spans FinishSplitK's 128 columns");
static_assert(lay::kMmaSteps == 4, "a lane's 16-byte load is 4 steps");

// The layout puts column row + 8 exactly in the registers that come out scaled by 16, so one
// zero term per column suffices: (1024 + zero) for column row, −(64 + zero) for row + 8.
constexpr bool ScaledRegistersAreHighRows() {
  for (int reg = 0; reg < 4; ++reg) {
    if (lay::MmaRegScaledBy16(reg) != (lay::MmaARow(0, reg) >= 8)) return false;
  }
  return true;
}
static_assert(ScaledRegistersAreHighRows(), "zero terms per register");

__host__ __device__ int XStrideHalves(int tiles_per_split) { return tiles_per_split * lay::kMmaTileInputs + kXPadHalves; }
// Groups a split of `tiles` k-tiles can touch.
int ParamGroups(const lay::MmaW4Shape& s, int tiles) {
  return static_cast<int>(lay::MmaSplitGroups(int64_t{tiles} * lay::kMmaSteps, s.group_steps, s.groups));
}
__host__ __device__ size_t XBytes(int tokens, int tiles) {
  return (static_cast<size_t>(tokens) * XStrideHalves(tiles) * 2 + 15) / 16 * 16;
}
size_t SharedBytes(const lay::MmaW4Shape& s, int tokens, int tiles) {
  return XBytes(tokens, tiles) + size_t{kWarps} * ParamGroups(s, tiles) * kParamBytesPerGroup;
}

// One group's constants for a lane: the scales of its columns row and row + 8, and the zero
// terms of the unpacking (integer arithmetic on the layout's true zero points).
struct GroupTerms {
  float scale_low;
  float scale_high;
  uint32_t plus_1024_low;
  uint32_t minus_64_high;
};

__device__ __forceinline__ GroupTerms LoadGroupTerms(const uint32_t* pair) {
  const uint2 words = *reinterpret_cast<const uint2*>(pair);
  const float2 scales = __half22float2(internal::BitsToHalf2(words.x));
  return {scales.x, scales.y, lay::MmaPlus1024Pair(words.y & 0xFFFFu), lay::MmaMinus64Pair(words.y >> 16)};
}

// The A registers (q − zero, exact in fp16) of one word of the layout.
__device__ __forceinline__ void Unpack(uint32_t word, const GroupTerms& terms, uint32_t (&a)[4]) {
  const __half2 sixteenth = __float2half2_rn(1.0f / 16.0f);
#pragma unroll
  for (int reg = 0; reg < 4; ++reg) {
    const __half2 biased = internal::BitsToHalf2(lay::MmaBiasedCodes(word, reg));
    a[reg] = internal::Half2ToBits(
        lay::MmaRegScaledBy16(reg)
            ? __hfma2(biased, sixteenth, internal::BitsToHalf2(terms.minus_64_high))
            : __hsub2(biased, internal::BitsToHalf2(terms.plus_1024_low)));
  }
}

struct KernelArgs {
  GptqMmaW4View w;
  const __half* x;
  int tokens;
  __half* y;
  float* partial_sums;
  unsigned* arrivals;
  int tiles_per_split;
  int param_groups;  // per warp in shared memory
  bool gather;
};

template <int kTokenTiles>
__global__ void __launch_bounds__(kThreads) GptqMmaW4Kernel(KernelArgs args) {
  const lay::MmaW4Shape& s = args.w.shape;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int column_tile = blockIdx.x * kWarps + warp;
  const bool active = column_tile < s.column_tiles;
  const int tile_begin = blockIdx.y * args.tiles_per_split;
  const int tiles = min(static_cast<int>(s.k_tiles) - tile_begin, args.tiles_per_split);

  // 1. The first k-tiles' weights, before anything else, so that memory is busy at once.
  const uint4* source = reinterpret_cast<const uint4*>(
      args.w.tiles + lay::MmaTileWordOffset(active ? column_tile : 0, tile_begin, s.k_tiles, lane));
  constexpr int kTileVectors = lay::kMmaTileWords / 4;
  uint4 ring[kDepth];
#pragma unroll
  for (int d = 0; d < kDepth; ++d) {
    ring[d] = active && d < tiles ? __ldg(source + d * kTileVectors) : make_uint4(0, 0, 0, 0);
  }

  // 2. Stage the split's activations [token][position] and the warps' group parameters.
  extern __shared__ __align__(16) unsigned char shared[];
  __half* staged_x = reinterpret_cast<__half*>(shared);
  const int x_stride = XStrideHalves(args.tiles_per_split);
  const int64_t input_begin = int64_t{tile_begin} * lay::kMmaTileInputs;
  const int split_inputs = tiles * lay::kMmaTileInputs;
  const int in = static_cast<int>(s.in_features);
  if (args.gather) {
    for (int k = threadIdx.x; k < split_inputs; k += kThreads) {
      const int source_input = args.w.perm[input_begin + k];
      for (int t = 0; t < args.tokens; ++t) {
        staged_x[t * x_stride + k] =
            source_input >= 0 ? args.x[static_cast<size_t>(t) * in + source_input] : __float2half_rn(0.0f);
      }
    }
  } else {  // identity order, x 8-byte aligned: 4 inputs per vector, to their positions
    const int vectors = split_inputs / 4;
    for (int e = threadIdx.x; e < args.tokens * vectors; e += kThreads) {
      const int t = e / vectors;
      const int local = (e % vectors) * 4;
      const int64_t input = input_begin + local;
      const uint2 value = input < in ? *reinterpret_cast<const uint2*>(args.x + static_cast<size_t>(t) * in + input)
                                     : make_uint2(0, 0);
      *reinterpret_cast<uint2*>(staged_x + t * x_stride + lay::MmaIdentityPosition(local)) = value;
    }
  }
  const int step_begin = tile_begin * lay::kMmaSteps;
  const int group_low = static_cast<int>(lay::MmaStepGroup(step_begin, s.group_steps, s.groups));
  const int group_high =
      static_cast<int>(lay::MmaStepGroup(step_begin + tiles * lay::kMmaSteps - 1, s.group_steps, s.groups));
  uint32_t* staged_params = reinterpret_cast<uint32_t*>(shared + XBytes(args.tokens, args.tiles_per_split)) +
                            warp * args.param_groups * lay::kMmaParamWords;
  if (active) {
    const uint4* params = reinterpret_cast<const uint4*>(
        args.w.params + lay::MmaParamWordOffset(column_tile, group_low, s.groups, 0));
    for (int v = lane; v < (group_high - group_low + 1) * lay::kMmaParamWords / 4; v += 32) {
      reinterpret_cast<uint4*>(staged_params)[v] = __ldg(params + v);
    }
  }
  __syncthreads();

  // 3. Stream the split: per k-tile one 16-byte load ahead, 4 steps of unpack + mma.
  const int row = lane / 4;
  float sums[kTokenTiles][4] = {};
  float group_sums[kTokenTiles][4] = {};
  int group = group_low;
  int steps_left = static_cast<int>(s.group_steps) - step_begin % static_cast<int>(s.group_steps);
  GroupTerms terms = LoadGroupTerms(staged_params + 2 * row);
  auto next_group = [&]() {
#pragma unroll
    for (int tt = 0; tt < kTokenTiles; ++tt) {
#pragma unroll
      for (int d = 0; d < 4; ++d) {
        sums[tt][d] = fmaf(d < 2 ? terms.scale_low : terms.scale_high, group_sums[tt][d], sums[tt][d]);
        group_sums[tt][d] = 0.0f;
      }
    }
    group = min(group + 1, group_high);
    steps_left = static_cast<int>(s.group_steps);
    terms = LoadGroupTerms(staged_params + (group - group_low) * lay::kMmaParamWords + 2 * row);
  };
  if (active) {
    for (int base = 0; base < tiles; base += kDepth) {
#pragma unroll
      for (int d = 0; d < kDepth; ++d) {
        const int tile = base + d;
        if (tile >= tiles) break;
        const uint4 vector = ring[d];
        if (tile + kDepth < tiles) ring[d] = __ldg(source + (tile + kDepth) * kTileVectors);
        const uint32_t words[lay::kMmaSteps] = {vector.x, vector.y, vector.z, vector.w};
        // B fragments: the lane's 16 activations of the k-tile, in slot order (MmaSlotPosition).
        uint32_t b[kTokenTiles][8];
#pragma unroll
        for (int tt = 0; tt < kTokenTiles; ++tt) {
          const int token = tt * 8 + row;
          uint4 low = make_uint4(0, 0, 0, 0);
          uint4 high = low;
          if (token < args.tokens) {
            const uint4* xv = reinterpret_cast<const uint4*>(staged_x + token * x_stride +
                                                              tile * lay::kMmaTileInputs +
                                                              lay::MmaSlotPosition(lane, 0, 0));
            low = xv[0];
            high = xv[1];
          }
          const uint32_t halves[8] = {low.x, low.y, low.z, low.w, high.x, high.y, high.z, high.w};
#pragma unroll
          for (int i = 0; i < 8; ++i) b[tt][i] = halves[i];
        }
#pragma unroll
        for (int step = 0; step < lay::kMmaSteps; ++step) {
          uint32_t a[4];
          Unpack(words[step], terms, a);
#pragma unroll
          for (int tt = 0; tt < kTokenTiles; ++tt) ptx::MmaM16N8K16(group_sums[tt], a, b[tt][2 * step], b[tt][2 * step + 1]);
          if (--steps_left == 0) next_group();
        }
      }
    }
    next_group();  // scales the last group's sums
  }

  // 4. Results: y directly, or through the workspace when the inputs are split.
  const int out = static_cast<int>(s.out_features);
  const bool single_split = gridDim.y == 1;
#pragma unroll
  for (int tt = 0; tt < kTokenTiles; ++tt) {
#pragma unroll
    for (int d = 0; d < 4; ++d) {
      const int col = column_tile * lay::kMmaTileColumns + lay::MmaDRow(lane, d);
      const int token = tt * 8 + lay::MmaDColumn(lane, d);
      if (col >= out || token >= args.tokens) continue;
      const size_t index = static_cast<size_t>(token) * out + col;
      if (single_split) {
        args.y[index] = __float2half_rn(sums[tt][d]);
      } else {
        atomicAdd(args.partial_sums + index, sums[tt][d]);
      }
    }
  }
  if (!single_split) {
    internal::FinishSplitK(args.partial_sums, args.arrivals, args.y, args.tokens, out,
                           blockIdx.x * internal::kTileColumns);
  }
}

template <typename F>
auto WithTokenTiles(int token_tiles, F&& f) {
  return token_tiles == 1 ? f(std::integral_constant<int, 1>()) : f(std::integral_constant<int, 2>());
}

CudaStatus CheckView(const GptqMmaW4View& w) {
  const lay::MmaW4Shape& s = w.shape;
  if (s.in_features <= 0 || s.out_features <= 0 || s.groups <= 0 || s.group_steps <= 0 || s.k_tiles <= 0 ||
      s.padded_inputs != s.k_tiles * lay::kMmaTileInputs || s.column_tiles != CeilDiv(s.out_features, lay::kMmaTileColumns)) {
    return CudaStatus::Error("GptqMmaW4: inconsistent shape (not from RepackGptqW4ForMma?)");
  }
  if (s.in_features * s.out_features > INT32_MAX || s.padded_inputs > INT32_MAX / 2) {
    return CudaStatus::Error("GptqMmaW4: in * out exceeds 2^31 - 1 elements");
  }
  if (w.tiles == nullptr || w.params == nullptr || w.perm == nullptr) {
    return CudaStatus::Error("GptqMmaW4: null tiles, params or perm");
  }
  return CudaStatus();
}

}  // namespace

CudaStatus DeviceGptqMmaW4::Upload(const layout::MmaW4Layer& layer) {
  QSHARD_CUDA_RETURN_IF_ERROR(tiles.Upload(layer.tiles));
  QSHARD_CUDA_RETURN_IF_ERROR(params.Upload(layer.params));
  QSHARD_CUDA_RETURN_IF_ERROR(perm.Upload(layer.perm));
  shape = layer.shape;
  return CudaStatus();
}

CudaStatus PlanGptqMmaW4(const GptqMmaW4View& w, const __half* x, int tokens, GptqMmaW4Plan& plan) {
  QSHARD_CUDA_RETURN_IF_ERROR(CheckView(w));
  if (tokens < 1 || tokens > kGptqMaxTokensPerLaunch) {
    return CudaStatus::Error("PlanGptqMmaW4: tokens must be between 1 and " +
                             std::to_string(kGptqMaxTokensPerLaunch));
  }
  const lay::MmaW4Shape& s = w.shape;
  plan = GptqMmaW4Plan();
  plan.token_tiles = tokens <= 8 ? 1 : 2;
  plan.column_blocks = CeilDiv(s.column_tiles, kWarps);
  plan.gather = !s.identity || s.in_features % 4 != 0 || reinterpret_cast<uintptr_t>(x) % 8 != 0;
  const int k_tiles = static_cast<int>(s.k_tiles);
  int most_tiles = std::min(k_tiles, kMaxSplitTiles);
  while (most_tiles > 1 && SharedBytes(s, tokens, most_tiles) > kSharedBudget) --most_tiles;
  if (SharedBytes(s, tokens, most_tiles) > kSharedBudget) {
    return CudaStatus::Error("PlanGptqMmaW4: one k-tile's activations and parameters exceed shared memory");
  }
  int device = 0;
  int multiprocessors = 0;
  int per_multiprocessor = 0;
  QSHARD_CUDA_TRY(cudaGetDevice(&device));
  QSHARD_CUDA_TRY(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  QSHARD_CUDA_RETURN_IF_ERROR(WithTokenTiles(plan.token_tiles, [&](auto t) -> CudaStatus {
    QSHARD_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_multiprocessor, GptqMmaW4Kernel<decltype(t)::value>, kThreads, SharedBytes(s, tokens, most_tiles)));
    return CudaStatus();
  }));
  if (per_multiprocessor < 1) return CudaStatus::Error("GptqMmaW4Kernel does not fit on this device");
  internal::KernelLimits limits;
  limits.resident_blocks = per_multiprocessor * multiprocessors;
  limits.split_row_multiple = 1;
  limits.min_split_rows = std::min(k_tiles, kDepth);  // a ring's worth of loads
  limits.max_split_rows = most_tiles;
  limits.overhead_rows = kDepth;  // staging, filling the ring, the epilogue
  GptqLaunchPlan split;
  split.column_blocks = plan.column_blocks;
  internal::ChooseSplits(k_tiles, limits, split);
  plan.k_splits = split.k_splits;
  plan.tiles_per_split = split.rows_per_split;
  plan.shared_bytes = SharedBytes(s, tokens, plan.tiles_per_split);
  return CudaStatus();
}

CudaStatus GptqMmaW4Matmul(const GptqMmaW4View& w, const __half* x, int tokens, __half* y,
                           GptqWorkspace& workspace, cudaStream_t stream) {
  QSHARD_CUDA_RETURN_IF_ERROR(CheckView(w));
  if (tokens < 0) return CudaStatus::Error("GptqMmaW4Matmul: negative token count");
  if (tokens == 0) return CudaStatus();
  if (x == nullptr || y == nullptr) return CudaStatus::Error("GptqMmaW4Matmul: null x or y");
  if (reinterpret_cast<uintptr_t>(w.tiles) % 16 != 0 || reinterpret_cast<uintptr_t>(w.params) % 16 != 0) {
    return CudaStatus::Error("GptqMmaW4Matmul: tiles and params must be 16-byte aligned");
  }
  QSHARD_CUDA_RETURN_IF_ERROR(workspace.Reserve(static_cast<int>(w.shape.out_features), stream));
  const int in = static_cast<int>(w.shape.in_features);
  const int out = static_cast<int>(w.shape.out_features);
  for (int first = 0; first < tokens; first += kGptqMaxTokensPerLaunch) {
    const int count = std::min(kGptqMaxTokensPerLaunch, tokens - first);
    const __half* x_slice = x + static_cast<size_t>(first) * in;
    GptqMmaW4Plan plan;
    QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMmaW4(w, x_slice, count, plan));
    const KernelArgs args = {w,  x_slice, count, y + static_cast<size_t>(first) * out, workspace.partial_sums(),
                             workspace.arrivals(), plan.tiles_per_split, ParamGroups(w.shape, plan.tiles_per_split),
                             plan.gather};
    const dim3 grid(plan.column_blocks, plan.k_splits);
    WithTokenTiles(plan.token_tiles, [&](auto t) {
      GptqMmaW4Kernel<decltype(t)::value><<<grid, kThreads, plan.shared_bytes, stream>>>(args);
      return 0;
    });
    QSHARD_CUDA_CHECK_LAUNCH("GptqMmaW4Kernel");
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
