// The tensor-core GPTQ kernel (mma.sync m16n8k16, fp16 operands, fp32 accumulators), used
// when the inputs come in multiples of 32. The mma's A operand holds (q − zero) of 16 output
// columns, exact small integers in fp16; B holds x. Each group's products are summed apart and
// scaled once per group in fp32, so no weight is rounded; only a 32-input step that spans groups
// (act-order g_idx) multiplies weights rounded to fp16, scale included.
//
// The kernel must unpack weights at the rate memory delivers them, so the work per weight is
// what matters:
//   - a dot product does not care in which order its inputs are summed, so the mma's k index
//     is mapped onto the inputs in whatever order unpacking produces them: each thread takes
//     8 consecutive inputs (one 4-bit word, or two 8-bit words) of its two columns, unpacks them
//     with the fp16 "1024 + q" trick (9 instructions per 8 weights), and feeds them as two
//     mma k-halves; its x values are read as one 16-byte vector and paired up to match;
//   - a block owns 128 output columns, 16 per warp, and the grid splits the inputs into runs of
//     whole 128-input stages;
//   - stages of qweight rows and of x are copied into shared memory with cp.async, three or four
//     stages deep, so that many bytes per SM are in flight without holding registers; staged
//     rows are padded so that the words and vectors a warp reads fall in distinct banks;
//   - the scales and zero points of the groups a split touches are staged once per block.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>

#include "kernels/cuda/gptq_kernels.cuh"
#include "kernels/cuda/ptx.cuh"

namespace qshard::gpu::internal {
namespace {

constexpr int kStepInputs = 32;    // two mma k-halves of 16
constexpr int kStageInputs = 128;  // inputs per pipeline stage
constexpr int kStepsPerStage = kStageInputs / kStepInputs;
constexpr int kXStride = kStageInputs + 32;  // halves per staged token row: rows 64 banks apart
constexpr int kMaxSplitSteps = 256;          // at most 8192 inputs per split
constexpr int kMaxStagedGroups = 24;         // groups whose scales/zeros a block stages
constexpr int kColumnsPerWarp = 16;
static_assert(kColumnsPerWarp * kWarps == kTileColumns, "warps share the block's columns");

template <int kBits, int kTokenTiles>
struct Layout {
  static constexpr int kPack = layout::GptqCodesPerWord(kBits);
  static constexpr int kStageRows = kStageInputs / kPack;
  static constexpr int kRowsPerStep = kStepInputs / kPack;
  static constexpr int kStages = kBits == 4 ? 4 : 3;  // 8-bit stages hold twice the bytes
  // 32-bit words per staged qweight row. A warp reads rows part (4 bits) or 2·part (8 bits),
  // columns 0..7: 8 (4 bits) or 4 (8 bits) words of padding put those 32 words in 32 banks.
  static constexpr int kWordStride = kTileColumns + (kBits == 4 ? 8 : 4);
  static constexpr int kTokens = 8 * kTokenTiles;
  // Byte offsets in dynamic shared memory; every region starts at a multiple of 16 bytes.
  static constexpr size_t kWeightStageBytes = size_t{kStageRows} * kWordStride * 4;
  static constexpr size_t kXStageBytes = size_t{kTokens} * kXStride * 2;
  static constexpr size_t kWeights = 0;
  static constexpr size_t kX = kWeights + kStages * kWeightStageBytes;
  static constexpr size_t kStepGroups = kX + kStages * kXStageBytes;
  static constexpr size_t kScales = kStepGroups + kMaxSplitSteps * sizeof(int);
  static constexpr size_t kZeros = kScales + size_t{kMaxStagedGroups} * kTileColumns * 2;
  static constexpr size_t kBytes = kZeros + size_t{kMaxStagedGroups} * (kTileColumns / kPack) * 4;
  static_assert(kWeightStageBytes % 16 == 0 && kXStageBytes % 16 == 0, "16-byte cp.async");
};

// The order in which a thread's 8 inputs come out of unpacking, as 4 pairs (two fp16 halves
// each): PairInput(2p), PairInput(2p + 1) make pair p. Pairs 0 and 1 feed the first mma (its
// k = 2·part, 2·part + 1 and k + 8), pairs 2 and 3 the second. 4 bits: masks 0x000F000F and
// 0x00F000F0 pick nibbles (0, 4) and (1, 5), then the same after a shift by 8, giving
// 0 4 1 5 2 6 3 7; 8 bits: byte_perm picks bytes (0, 2) and (1, 3) of each word, giving
// 0 2 1 3 4 6 5 7.
template <int kBits>
__device__ __forceinline__ constexpr int PairInput(int i) {
  return kBits == 4 ? i % 2 * 4 + i / 2 : i / 4 * 4 + i % 2 * 2 + i % 4 / 2;
}

// Per-group constants of one column for Unpack: (1024 + zero) and −(64 + zero) in both halves.
struct ZeroTerms {
  uint32_t plus_1024;
  uint32_t minus_64;
};

__device__ __forceinline__ ZeroTerms MakeZeroTerms(int zero) {
  const float z = static_cast<float>(zero);
  return {Half2ToBits(__float2half2_rn(1024.0f + z)), Half2ToBits(__float2half2_rn(-64.0f - z))};
}

// The thread's 8 values q − zero of one column, as the 4 pairs of PairOrder, exactly: OR-ing q
// into the mantissa of fp16 1024 (ulp 1) gives 1024 + q; a nibble four bits up gives
// 1024 + 16q, which an fma with 1/16 brings back. first, second: the thread's words (4 bits:
// one word; 8 bits: inputs 0-3 and 4-7).
template <int kBits>
__device__ __forceinline__ void Unpack(uint32_t first, uint32_t second, ZeroTerms zero,
                                       uint32_t (&pairs)[4]) {
  const __half2 plus_1024 = BitsToHalf2(zero.plus_1024);
  if constexpr (kBits == 4) {
    const __half2 sixteenth = __float2half2_rn(1.0f / 16.0f);
    const __half2 minus_64 = BitsToHalf2(zero.minus_64);
    const uint32_t high = first >> 8;
    pairs[0] = Half2ToBits(__hsub2(BitsToHalf2((first & 0x000F000Fu) | kHalf1024Pair), plus_1024));
    pairs[1] = Half2ToBits(
        __hfma2(BitsToHalf2((first & 0x00F000F0u) | kHalf1024Pair), sixteenth, minus_64));
    pairs[2] = Half2ToBits(__hsub2(BitsToHalf2((high & 0x000F000Fu) | kHalf1024Pair), plus_1024));
    pairs[3] = Half2ToBits(
        __hfma2(BitsToHalf2((high & 0x00F000F0u) | kHalf1024Pair), sixteenth, minus_64));
  } else {
    pairs[0] = Half2ToBits(__hsub2(BitsToHalf2(__byte_perm(first, 0x64u, 0x4240)), plus_1024));
    pairs[1] = Half2ToBits(__hsub2(BitsToHalf2(__byte_perm(first, 0x64u, 0x4341)), plus_1024));
    pairs[2] = Half2ToBits(__hsub2(BitsToHalf2(__byte_perm(second, 0x64u, 0x4240)), plus_1024));
    pairs[3] = Half2ToBits(__hsub2(BitsToHalf2(__byte_perm(second, 0x64u, 0x4341)), plus_1024));
  }
}

// The B fragments matching Unpack's pairs, from the thread's 8 x values (4 words of 2 halves):
// b[0], b[1] for the first mma, b[2], b[3] for the second.
template <int kBits>
__device__ __forceinline__ void PairActivations(uint4 x, uint32_t (&b)[4]) {
  if constexpr (kBits == 4) {  // pairs (0, 4), (1, 5), (2, 6), (3, 7)
    b[0] = __byte_perm(x.x, x.z, 0x5410);
    b[1] = __byte_perm(x.x, x.z, 0x7632);
    b[2] = __byte_perm(x.y, x.w, 0x5410);
    b[3] = __byte_perm(x.y, x.w, 0x7632);
  } else {  // pairs (0, 2), (1, 3), (4, 6), (5, 7)
    b[0] = __byte_perm(x.x, x.y, 0x5410);
    b[1] = __byte_perm(x.x, x.y, 0x7632);
    b[2] = __byte_perm(x.z, x.w, 0x5410);
    b[3] = __byte_perm(x.z, x.w, 0x7632);
  }
}

// Where a block finds scales and zero words: its staged copy for groups in
// [group_low, group_high] when `staged`, else global memory.
struct GroupSource {
  const __half* scales;   // global [groups, out]
  const int32_t* qzeros;  // global [groups, out / P]
  const __half* staged_scales;
  const uint32_t* staged_zeros;
  int out;
  int tile_col;
  int group_low;
  int group_high;
  bool staged;
};

template <int kBits>
__device__ __forceinline__ void ScaleAndZero(const GroupSource& source, int group, int col,
                                             float& scale, int& zero) {
  constexpr int kPack = layout::GptqCodesPerWord(kBits);
  scale = 0.0f;
  zero = 0;
  if (source.tile_col + col >= source.out) return;
  uint32_t zero_word;
  if (source.staged && group >= source.group_low && group <= source.group_high) {
    scale = __half2float(source.staged_scales[(group - source.group_low) * kTileColumns + col]);
    zero_word =
        source.staged_zeros[(group - source.group_low) * (kTileColumns / kPack) + col / kPack];
  } else {
    scale = __half2float(
        source.scales[static_cast<size_t>(group) * source.out + source.tile_col + col]);
    zero_word = static_cast<uint32_t>(
        source.qzeros[static_cast<size_t>(group) * (source.out / kPack) +
                      (source.tile_col + col) / kPack]);
  }
  zero = static_cast<int>((zero_word >> (col % kPack * kBits)) & layout::GptqCodeMask(kBits)) + layout::kGptqZeroOffset;
}

struct GroupConstants {
  float scale[2];  // for the thread's two columns
  ZeroTerms zero[2];
};

template <int kBits>
__device__ __forceinline__ GroupConstants LoadGroupConstants(GroupSource source, int group,
                                                          int col0, int col1) {
  GroupConstants constants;
  const int cols[2] = {col0, col1};
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    int zero;
    ScaleAndZero<kBits>(source, group, cols[c], constants.scale[c], zero);
    constants.zero[c] = MakeZeroTerms(zero);
  }
  return constants;
}

struct StepPairs {
  uint32_t pairs[2][4];  // [column][pair]
};

// The pairs of a step whose inputs belong to different groups: every weight scaled by its own
// group's scale and rounded to fp16. Out of line: only act-order layers get here, and inlining
// it into every unrolled step would bloat the loop past the instruction cache. first, second: the thread's words per column, as in the
// kernel; first_input: the thread's first input.
template <int kBits>
__device__ __noinline__ StepPairs RoundedStepPairs(GroupSource source, const int32_t* g_idx,
                                                   int groups, uint4 words, int first_input,
                                                   int col0, int col1) {
  constexpr uint32_t kMask = layout::GptqCodeMask(kBits);
  const uint32_t first[2] = {words.x, words.y};
  const uint32_t second[2] = {words.z, words.w};
  const int cols[2] = {col0, col1};
  StepPairs result;
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    __half value[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float scale;
      int zero;
      ScaleAndZero<kBits>(source, ClampGroup(g_idx[first_input + j], groups), cols[c], scale,
                          zero);
      const uint32_t word = kBits == 4 || j < 4 ? first[c] : second[c];
      const int q = static_cast<int>((word >> (j % layout::GptqCodesPerWord(kBits) * kBits)) & kMask);
      value[j] = __float2half_rn(scale * static_cast<float>(q - zero));
    }
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      result.pairs[c][p] = Half2ToBits(
          __halves2half2(value[PairInput<kBits>(2 * p)], value[PairInput<kBits>(2 * p + 1)]));
    }
  }
  return result;
}

template <int kBits, int kTokenTiles>
__global__ void __launch_bounds__(kThreads)
    GptqTensorCoreKernel(GptqMatrixView w, const __half* __restrict__ x, int tokens,
                         __half* __restrict__ y, float* __restrict__ partial_sums,
                         unsigned* __restrict__ arrivals, int rows_per_split) {
  using L = Layout<kBits, kTokenTiles>;
  constexpr int kPack = L::kPack;
  constexpr int kStages = L::kStages;
  const int in = w.in_features;
  const int out = w.out_features;
  const int row_begin = blockIdx.y * rows_per_split;
  const int row_end = min(in / kPack, row_begin + rows_per_split);
  const int input_begin = row_begin * kPack;
  const int input_end = row_end * kPack;
  const int steps = (input_end - input_begin) / kStepInputs;  // in % 32 == 0
  const int stages = (steps + kStepsPerStage - 1) / kStepsPerStage;
  const int tile_col = blockIdx.x * kTileColumns;

  extern __shared__ __align__(16) unsigned char shared[];
  uint32_t* weight_tiles = reinterpret_cast<uint32_t*>(shared + L::kWeights);
  __half* x_tiles = reinterpret_cast<__half*>(shared + L::kX);
  int* step_group = reinterpret_cast<int*>(shared + L::kStepGroups);
  __half* staged_scales = reinterpret_cast<__half*>(shared + L::kScales);
  uint32_t* staged_zeros = reinterpret_cast<uint32_t*>(shared + L::kZeros);
  __shared__ int group_low;
  __shared__ int group_high;

  // Stage `stage`'s qweight rows (128 columns) and x inputs (all tokens) into buffer
  // stage % kStages. Rows past the split and tokens past `tokens` are zero-filled; a zero x
  // makes whatever the weights hold there add nothing. Thread (warp, lane) copies 16-byte
  // chunk `lane` of rows warp, warp + 8, ...; the first kXChunks threads copy one x chunk each.
  constexpr int kChunksPerRow = kTileColumns / 4;
  constexpr int kRowsPerPass = kThreads / kChunksPerRow;
  constexpr int kWeightPasses = L::kStageRows / kRowsPerPass;
  static_assert(L::kStageRows % kRowsPerPass == 0, "whole passes over a stage's rows");
  constexpr int kChunksPerToken = kStageInputs / 8;
  constexpr int kXChunks = L::kTokens * kChunksPerToken;
  static_assert(kXChunks <= kThreads, "one x chunk per thread at most");
  const int copy_row = threadIdx.x / kChunksPerRow;
  const int copy_col = tile_col + threadIdx.x % kChunksPerRow * 4;
  const int32_t* weight_source =
      w.qweight + static_cast<size_t>(row_begin + copy_row) * out + copy_col;
  const int weight_target = copy_row * L::kWordStride + threadIdx.x % kChunksPerRow * 4;
  const int x_token = threadIdx.x / kChunksPerToken;
  const int x_input = input_begin + threadIdx.x % kChunksPerToken * 8;
  const bool x_copier = threadIdx.x < kXChunks;
  const __half* x_source = x + static_cast<size_t>(x_token) * in + x_input;
  const int x_target = x_token * kXStride + threadIdx.x % kChunksPerToken * 8;
  auto load_stage = [&](int stage) {
    if (stage < stages) {
      const int buffer = stage % kStages;
      const int stage_row = stage * L::kStageRows;  // within the split
      uint32_t* weights = weight_tiles + buffer * L::kStageRows * L::kWordStride + weight_target;
#pragma unroll
      for (int pass = 0; pass < kWeightPasses; ++pass) {
        const int row = stage_row + pass * kRowsPerPass;
        const bool valid = row_begin + copy_row + row < row_end && copy_col < out;
        ptx::CopyAsync16(weights + pass * kRowsPerPass * L::kWordStride,
                    valid ? weight_source + static_cast<size_t>(row) * out : w.qweight, valid);
      }
      if (x_copier) {
        const int input = stage * kStageInputs;
        const bool valid = x_token < tokens && x_input + input < input_end;
        ptx::CopyAsync16(x_tiles + buffer * L::kTokens * kXStride + x_target,
                    valid ? x_source + input : x, valid);
      }
    }
    ptx::CommitAsync();  // one group per stage, empty ones too, so that the wait counts line up
  };
#pragma unroll
  for (int stage = 0; stage < kStages - 1; ++stage) load_stage(stage);

  // While those copies fly: the group of each 32-input step (−1 where the step spans groups),
  // then the scales and zero words of the range of groups the single-group steps use.
  if (threadIdx.x == 0) {
    group_low = INT_MAX;
    group_high = -1;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < steps; s += kThreads) {
    const int* g_idx = w.g_idx + input_begin + s * kStepInputs;
    const int first = g_idx[0];
    bool one_group = true;
#pragma unroll
    for (int k = 1; k < kStepInputs; ++k) one_group &= g_idx[k] == first;
    const int group = one_group ? ClampGroup(first, w.groups) : -1;
    step_group[s] = group;
    if (one_group) {
      atomicMin(&group_low, group);
      atomicMax(&group_high, group);
    }
  }
  __syncthreads();
  const bool params_staged = group_high >= group_low && group_high - group_low < kMaxStagedGroups;
  if (params_staged) {
    const int count = group_high - group_low + 1;
    for (int e = threadIdx.x; e < count * kTileColumns; e += kThreads) {
      const int col = tile_col + e % kTileColumns;
      const size_t group = group_low + e / kTileColumns;
      staged_scales[e] = col < out ? w.scales[group * out + col] : __float2half_rn(0.0f);
    }
    constexpr int kZeroWords = kTileColumns / kPack;
    for (int e = threadIdx.x; e < count * kZeroWords; e += kThreads) {
      const int word = tile_col / kPack + e % kZeroWords;
      const size_t group = group_low + e / kZeroWords;
      staged_zeros[e] = word < out / kPack ? w.qzeros[group * (out / kPack) + word] : 0u;
    }
  }  // the barrier at the top of the main loop publishes these
  const GroupSource source = {w.scales, w.qzeros, staged_scales, staged_zeros, out, tile_col,
                              group_low, group_high, params_staged};

  // Fragment coordinates (PTX ISA, mma.m16n8k16): lane = 4 · row + part. The thread holds A
  // rows (columns of W) `row` and `row + 8`, B column (token) `row`, D columns `row`, `row + 8`
  // for tokens 2·part and 2·part + 1; its k values map to the step's inputs 8·part .. + 7.
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int row = lane / 4;
  const int part = lane % 4;
  const int col0 = warp * kColumnsPerWarp + row;
  const int col1 = col0 + 8;
  // Word offsets of the thread's words within a staged step, and of its x vector.
  const int word_offset = (kBits == 4 ? part : 2 * part) * L::kWordStride;
  const int x_offset = row * kXStride + 8 * part;

  float sums[kTokenTiles][4] = {};
  float group_sums[kTokenTiles][4] = {};    // unscaled, for the loaded group
  float rounded_sums[kTokenTiles][4] = {};  // steps that span groups, already scaled
  GroupConstants constants = {{0.0f, 0.0f}, {{0u, 0u}, {0u, 0u}}};
  int loaded_group = -1;
  auto flush_group = [&]() {
#pragma unroll
    for (int tile = 0; tile < kTokenTiles; ++tile) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        sums[tile][i] = fmaf(constants.scale[i / 2], group_sums[tile][i], sums[tile][i]);
        group_sums[tile][i] = 0.0f;
      }
    }
  };

  for (int stage = 0; stage < stages; ++stage) {
    ptx::WaitAsync<kStages - 2>();
    __syncthreads();  // the stage has landed for all threads; the buffer refilled next is free
    load_stage(stage + kStages - 1);
    const uint32_t* weights = weight_tiles + (stage % kStages) * L::kStageRows * L::kWordStride;
    const __half* x_tile = x_tiles + (stage % kStages) * L::kTokens * kXStride;
    const int stage_steps = min(kStepsPerStage, steps - stage * kStepsPerStage);
#pragma unroll
    for (int step = 0; step < kStepsPerStage; ++step) {
      if (step >= stage_steps) break;  // the same for the whole block
      const uint32_t* step_words = weights + step * L::kRowsPerStep * L::kWordStride + word_offset;
      const uint32_t first0 = step_words[col0];
      const uint32_t first1 = step_words[col1];
      const uint32_t second0 = kBits == 4 ? 0u : step_words[L::kWordStride + col0];
      const uint32_t second1 = kBits == 4 ? 0u : step_words[L::kWordStride + col1];
      uint32_t b[kTokenTiles][4];
#pragma unroll
      for (int tile = 0; tile < kTokenTiles; ++tile) {
        PairActivations<kBits>(*reinterpret_cast<const uint4*>(
                                   x_tile + tile * 8 * kXStride + x_offset + step * kStepInputs),
                               b[tile]);
      }
      uint32_t pairs[2][4];
      const int group = step_group[stage * kStepsPerStage + step];
      if (group >= 0) {
        if (group != loaded_group) {
          flush_group();
          constants = LoadGroupConstants<kBits>(source, group, col0, col1);
          loaded_group = group;
        }
        Unpack<kBits>(first0, second0, constants.zero[0], pairs[0]);
        Unpack<kBits>(first1, second1, constants.zero[1], pairs[1]);
#pragma unroll
        for (int tile = 0; tile < kTokenTiles; ++tile) {
          ptx::MmaM16N8K16(group_sums[tile], {pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]}, b[tile][0], b[tile][1]);
          ptx::MmaM16N8K16(group_sums[tile], {pairs[0][2], pairs[1][2], pairs[0][3], pairs[1][3]}, b[tile][2], b[tile][3]);
        }
      } else {
        const StepPairs rounded = RoundedStepPairs<kBits>(
            source, w.g_idx, w.groups, make_uint4(first0, first1, second0, second1),
            input_begin + (stage * kStepsPerStage + step) * kStepInputs + 8 * part, col0, col1);
#pragma unroll
        for (int tile = 0; tile < kTokenTiles; ++tile) {
          ptx::MmaM16N8K16(rounded_sums[tile],
                           {rounded.pairs[0][0], rounded.pairs[1][0], rounded.pairs[0][1], rounded.pairs[1][1]},
                           b[tile][0], b[tile][1]);
          ptx::MmaM16N8K16(rounded_sums[tile],
                           {rounded.pairs[0][2], rounded.pairs[1][2], rounded.pairs[0][3], rounded.pairs[1][3]},
                           b[tile][2], b[tile][3]);
        }
      }
    }
  }
  ptx::WaitAsync<0>();
  flush_group();

  const bool single_split = gridDim.y == 1;
#pragma unroll
  for (int tile = 0; tile < kTokenTiles; ++tile) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int col = tile_col + (i < 2 ? col0 : col1);
      const int token = tile * 8 + 2 * part + i % 2;
      if (col >= out || token >= tokens) continue;
      const float total = sums[tile][i] + rounded_sums[tile][i];
      const size_t index = static_cast<size_t>(token) * out + col;
      if (single_split) {
        y[index] = __float2half_rn(total);
      } else {
        atomicAdd(partial_sums + index, total);
      }
    }
  }
  if (!single_split) FinishSplitK(partial_sums, arrivals, y, tokens, out, tile_col);
}

// Calls f(integral_constant<bits>, integral_constant<token tiles>) for the serving instance.
template <typename F>
CudaStatus WithInstance(int bits, int token_tile, F&& f) {
  using Four = std::integral_constant<int, 4>;
  using Eight = std::integral_constant<int, 8>;
  using OneTile = std::integral_constant<int, 1>;
  using TwoTiles = std::integral_constant<int, 2>;
  if (bits == 4) return token_tile <= 8 ? f(Four(), OneTile()) : f(Four(), TwoTiles());
  return token_tile <= 8 ? f(Eight(), OneTile()) : f(Eight(), TwoTiles());
}

// Blocks of one instance that fit on an SM, measured (and the shared-memory opt-in made) once
// per device.
constexpr int kCachedDevices = 64;
template <int kBits, int kTokenTiles>
CudaStatus ResidentPerMultiprocessor(int device, int& blocks) {
  static std::atomic<int> cached[kCachedDevices];  // 0: not measured yet
  if (device < kCachedDevices && (blocks = cached[device].load(std::memory_order_relaxed)) > 0) {
    return CudaStatus();
  }
  constexpr size_t kShared = Layout<kBits, kTokenTiles>::kBytes;
  QSHARD_CUDA_TRY(cudaFuncSetAttribute(GptqTensorCoreKernel<kBits, kTokenTiles>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(kShared)));
  // Prefer shared memory over L1: the kernel reads global memory through cp.async and needs
  // little L1, and the full carve-out fits one more block per SM.
  QSHARD_CUDA_TRY(cudaFuncSetAttribute(GptqTensorCoreKernel<kBits, kTokenTiles>,
                                       cudaFuncAttributePreferredSharedMemoryCarveout,
                                       cudaSharedmemCarveoutMaxShared));
  QSHARD_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &blocks, GptqTensorCoreKernel<kBits, kTokenTiles>, kThreads, kShared));
  if (blocks < 1) return CudaStatus::Error("GptqTensorCoreKernel does not fit on this device");
  if (device < kCachedDevices) cached[device].store(blocks, std::memory_order_relaxed);
  return CudaStatus();
}

}  // namespace

bool TensorCoreApplies(const GptqMatrixView& w, const __half* x) {
  return w.in_features % kStepInputs == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

int TensorCoreTokenTile(int tokens) { return tokens <= 8 ? 8 : 16; }

CudaStatus TensorCoreLimits(const GptqMatrixView& w, int token_tile, int device,
                            KernelLimits& limits) {
  int per_multiprocessor = 0;
  QSHARD_CUDA_RETURN_IF_ERROR(WithInstance(w.bits, token_tile, [&](auto b, auto t) {
    return ResidentPerMultiprocessor<decltype(b)::value, decltype(t)::value>(
        device, per_multiprocessor);
  }));
  int multiprocessors = 0;
  QSHARD_CUDA_TRY(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  const int pack = layout::GptqCodesPerWord(w.bits);
  const int stage_rows = kStageInputs / pack;
  // A split must fit the step table and, with contiguous groups, touch few enough groups for
  // their scales to be staged (a group more than the average spacing allows for misalignment).
  const int64_t group_inputs = std::max(1, w.in_features / w.groups);
  const int64_t max_inputs = std::min<int64_t>(int64_t{kMaxSplitSteps} * kStepInputs,
                                               (kMaxStagedGroups - 1) * group_inputs);
  limits.resident_blocks = per_multiprocessor * multiprocessors;
  limits.split_row_multiple = stage_rows;
  limits.min_split_rows = 2 * stage_rows;
  limits.max_split_rows = static_cast<int>(std::max<int64_t>(1, max_inputs / kStageInputs)) * stage_rows;
  limits.overhead_rows = 2 * stage_rows;  // prologue and filling the pipeline
  return CudaStatus();
}

CudaStatus LaunchTensorCore(const GptqMatrixView& w, const __half* x, int tokens, __half* y,
                            const GptqLaunchPlan& plan, const GptqWorkspace& workspace,
                            cudaStream_t stream) {
  return WithInstance(w.bits, plan.token_tile, [&](auto b, auto t) {
    constexpr int kBits = decltype(b)::value;
    constexpr int kTokenTiles = decltype(t)::value;
    const dim3 grid(plan.column_blocks, plan.k_splits);
    GptqTensorCoreKernel<kBits, kTokenTiles>
        <<<grid, kThreads, Layout<kBits, kTokenTiles>::kBytes, stream>>>(
            w, x, tokens, y, workspace.partial_sums(), workspace.arrivals(), plan.rows_per_split);
    QSHARD_CUDA_CHECK_LAUNCH("GptqTensorCoreKernel");
    return CudaStatus();
  });
}

}  // namespace qshard::gpu::internal
