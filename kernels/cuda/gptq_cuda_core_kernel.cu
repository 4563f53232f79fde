// The CUDA-core GPTQ kernel: fp32 FMAs on exactly dequantized weights. It serves every shape
// the layout allows (any g_idx, inputs in multiples of 4 or 8): the one-token GEMV, where it
// beats the tensor-core kernel, and the shapes that kernel does not take. Organised around
// streaming qweight once:
//   - each thread reads 4 adjacent output columns of a qweight row as one 16-byte load, so a
//     warp reads 512 contiguous bytes per row (qweight is [in / P, out], contiguous along out);
//   - the 8 warps of a block take consecutive runs of rows for the same 128 columns, and the
//     grid splits the rows further (k_splits) so that small layers still fill every SM;
//   - each warp keeps a batch of 4 rows in flight while it works on the previous one;
//   - the activations of the block's rows are staged once in shared memory as fp32, where
//     every thread of a warp reads the same word (a broadcast);
//   - unpacking avoids integer-to-float conversions (a slow pipe): the 4- or 8-bit value is
//     OR-ed into the mantissa of the fp16 number 1024, and 1024 + zero is subtracted in fp16,
//     which is exact for these small integers.
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "kernels/cuda/gptq_kernels.cuh"

namespace qshard::gpu::internal {
namespace {

constexpr int kColumnsPerThread = 4;  // one int4 of qweight
constexpr int kRowsInFlight = 4;
static_assert(kTileColumns == 32 * kColumnsPerThread, "a warp spans the block's columns");
// Shared memory for one split's activations, staged as fp32. Up to 4 tokens, 32 KB: with the
// 4 KB reduction buffer and the row groups this stays under the 48 KB a launch gets without
// opting in, and leaves room for several blocks per SM. The 16-token kernel needs so many
// registers that one block fills an SM anyway, so it opts in to more (fewer splits, fewer
// atomics), as much as the device allows up to 96 KB.
constexpr int kStagedActivationBytes = 32 * 1024;
constexpr int kStagedActivationBytesFullTile = 96 * 1024;
constexpr int kSharedReserveBytes = 8 * 1024;  // reduction buffer, row groups, flags

// Scale and zero point of one group for a thread's 4 columns, in the forms the unpacking uses.
struct GroupParams {
  float scale[kColumnsPerThread];
  int zero[kColumnsPerThread];                 // stored zero + 1
  __half2 zero_plus_1024[kColumnsPerThread];   // (1024 + zero) in both halves
  __half2 neg_zero_plus_64[kColumnsPerThread]; // −(64 + zero): see DequantizeWord for 4 bits
};

template <int kBits>
__device__ __forceinline__ void LoadGroupParams(const GptqMatrixView& w, int group, int col,
                                                bool col_ok, GroupParams& p) {
  constexpr int kPack = layout::GptqCodesPerWord(kBits);
  constexpr uint32_t kMask = layout::GptqCodeMask(kBits);
#pragma unroll
  for (int c = 0; c < kColumnsPerThread; ++c) {
    p.scale[c] = 0.0f;
    p.zero[c] = 0;
  }
  if (col_ok) {
    // col is a multiple of 4 and out a multiple of 4: the four fp16 scales are one 8-byte word,
    // and the four zero points sit in one qzeros word (P is 8 or 4).
    const uint2 scale_bits = __ldg(reinterpret_cast<const uint2*>(
        w.scales + static_cast<size_t>(group) * w.out_features + col));
    const float2 s01 = __half22float2(BitsToHalf2(scale_bits.x));
    const float2 s23 = __half22float2(BitsToHalf2(scale_bits.y));
    p.scale[0] = s01.x;
    p.scale[1] = s01.y;
    p.scale[2] = s23.x;
    p.scale[3] = s23.y;
    const uint32_t zero_word = static_cast<uint32_t>(
        __ldg(w.qzeros + static_cast<size_t>(group) * (w.out_features / kPack) + col / kPack));
    const int shift = (col % kPack) * kBits;
#pragma unroll
    for (int c = 0; c < kColumnsPerThread; ++c) {
      p.zero[c] = static_cast<int>((zero_word >> (shift + c * kBits)) & kMask) + layout::kGptqZeroOffset;
    }
  }
#pragma unroll
  for (int c = 0; c < kColumnsPerThread; ++c) {
    p.zero_plus_1024[c] = __float2half2_rn(1024.0f + static_cast<float>(p.zero[c]));
    p.neg_zero_plus_64[c] = __float2half2_rn(-64.0f - static_cast<float>(p.zero[c]));
  }
}

// v[k] = q_k − zero for the 8 inputs of one 4-bit word. Masking with 0x000F000F leaves nibbles
// 0 and 4 as the low bits of the two halves (1024 + q); masking with 0x00F000F0 leaves nibbles
// 1 and 5 four bits higher (1024 + 16q), which one fma with 1/16 brings back. Shifting by 8
// does the same for nibbles 2, 6 and 3, 7. Every intermediate is an integer below 2048: exact.
__device__ __forceinline__ void DequantizeWord(uint32_t word, const GroupParams& p, int c,
                                               float (&v)[8]) {
  const __half2 sixteenth = __float2half2_rn(1.0f / 16.0f);
  const uint32_t high = word >> 8;
  const float2 v04 = __half22float2(
      __hsub2(BitsToHalf2((word & 0x000F000Fu) | kHalf1024Pair), p.zero_plus_1024[c]));
  const float2 v15 = __half22float2(__hfma2(BitsToHalf2((word & 0x00F000F0u) | kHalf1024Pair),
                                            sixteenth, p.neg_zero_plus_64[c]));
  const float2 v26 = __half22float2(
      __hsub2(BitsToHalf2((high & 0x000F000Fu) | kHalf1024Pair), p.zero_plus_1024[c]));
  const float2 v37 = __half22float2(__hfma2(BitsToHalf2((high & 0x00F000F0u) | kHalf1024Pair),
                                            sixteenth, p.neg_zero_plus_64[c]));
  v[0] = v04.x;
  v[4] = v04.y;
  v[1] = v15.x;
  v[5] = v15.y;
  v[2] = v26.x;
  v[6] = v26.y;
  v[3] = v37.x;
  v[7] = v37.y;
}

// v[k] = q_k − zero for the 4 inputs of one 8-bit word: byte_perm places bytes 0 and 2 (then
// 1 and 3) under the exponent byte 0x64 of fp16 1024.
__device__ __forceinline__ void DequantizeWord(uint32_t word, const GroupParams& p, int c,
                                               float (&v)[4]) {
  const float2 v02 =
      __half22float2(__hsub2(BitsToHalf2(__byte_perm(word, 0x64u, 0x4240)), p.zero_plus_1024[c]));
  const float2 v13 =
      __half22float2(__hsub2(BitsToHalf2(__byte_perm(word, 0x64u, 0x4341)), p.zero_plus_1024[c]));
  v[0] = v02.x;
  v[2] = v02.y;
  v[1] = v13.x;
  v[3] = v13.y;
}

// The staged activations of one input for every token of the tile.
template <int kTokens>
__device__ __forceinline__ void LoadStagedX(const float* staged, float (&xv)[kTokens]) {
  if constexpr (kTokens % 4 == 0) {
#pragma unroll
    for (int t = 0; t < kTokens; t += 4) {
      const float4 four = *reinterpret_cast<const float4*>(staged + t);
      xv[t] = four.x;
      xv[t + 1] = four.y;
      xv[t + 2] = four.z;
      xv[t + 3] = four.w;
    }
  } else {
#pragma unroll
    for (int t = 0; t < kTokens; ++t) xv[t] = staged[t];
  }
}

// sums[t][c] += x[t, input k] · (q_k − zero) (· scale when kApplyScale) for one qweight row
// whose inputs all belong to the group in `p`.
template <int kBits, int kTokens, bool kApplyScale>
__device__ __forceinline__ void AccumulateRow(const int4& words, const GroupParams& p,
                                              const float* staged_row,
                                              float (&sums)[kTokens][kColumnsPerThread]) {
  constexpr int kPack = layout::GptqCodesPerWord(kBits);
  const uint32_t word[kColumnsPerThread] = {
      static_cast<uint32_t>(words.x), static_cast<uint32_t>(words.y),
      static_cast<uint32_t>(words.z), static_cast<uint32_t>(words.w)};
  float v[kColumnsPerThread][kPack];
#pragma unroll
  for (int c = 0; c < kColumnsPerThread; ++c) DequantizeWord(word[c], p, c, v[c]);
#pragma unroll
  for (int k = 0; k < kPack; ++k) {
    float xv[kTokens];
    LoadStagedX<kTokens>(staged_row + k * kTokens, xv);
#pragma unroll
    for (int c = 0; c < kColumnsPerThread; ++c) {
      const float weight = kApplyScale ? v[c][k] * p.scale[c] : v[c][k];
#pragma unroll
      for (int t = 0; t < kTokens; ++t) sums[t][c] = fmaf(xv[t], weight, sums[t][c]);
    }
  }
}

// The same for a row whose inputs belong to different groups (act-order g_idx): each input
// fetches its own group's scale and zero and is scaled on the spot.
template <int kBits, int kTokens>
__device__ __forceinline__ void AccumulateMixedRow(const GptqMatrixView& w, const int4& words,
                                                int first_input, int col, bool col_ok,
                                                const float* staged_row,
                                                float (&sums)[kTokens][kColumnsPerThread]) {
  constexpr int kPack = layout::GptqCodesPerWord(kBits);
  constexpr uint32_t kMask = layout::GptqCodeMask(kBits);
  const uint32_t word[kColumnsPerThread] = {
      static_cast<uint32_t>(words.x), static_cast<uint32_t>(words.y),
      static_cast<uint32_t>(words.z), static_cast<uint32_t>(words.w)};
#pragma unroll
  for (int k = 0; k < kPack; ++k) {
    GroupParams p;
    LoadGroupParams<kBits>(w, ClampGroup(__ldg(w.g_idx + first_input + k), w.groups), col,
                           col_ok, p);
    float xv[kTokens];
    LoadStagedX<kTokens>(staged_row + k * kTokens, xv);
#pragma unroll
    for (int c = 0; c < kColumnsPerThread; ++c) {
      const int q = static_cast<int>((word[c] >> (k * kBits)) & kMask);
      const float weight = static_cast<float>(q - p.zero[c]) * p.scale[c];
#pragma unroll
      for (int t = 0; t < kTokens; ++t) sums[t][c] = fmaf(xv[t], weight, sums[t][c]);
    }
  }
}

template <int kTokens>
__device__ __forceinline__ void FlushGroupSums(float (&group_sums)[kTokens][kColumnsPerThread],
                                               const GroupParams& p,
                                               float (&sums)[kTokens][kColumnsPerThread]) {
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
#pragma unroll
    for (int c = 0; c < kColumnsPerThread; ++c) {
      sums[t][c] = fmaf(p.scale[c], group_sums[t][c], sums[t][c]);
      group_sums[t][c] = 0.0f;
    }
  }
}

// One block: 128 output columns × one split of the qweight rows × up to kTokens tokens.
template <int kBits, int kTokens>
__global__ void __launch_bounds__(kThreads)
    GptqCudaCoreKernel(GptqMatrixView w, const __half* __restrict__ x, int tokens,
                     __half* __restrict__ y, float* __restrict__ partial_sums,
                     unsigned* __restrict__ arrivals, int rows_per_split) {
  constexpr int kPack = layout::GptqCodesPerWord(kBits);
  // Below 5 tokens, sums within a group are kept unscaled and scaled once per group, which
  // saves a multiply per weight; at 16 tokens the second set of sums would cost too many
  // registers, and the multiply is shared by 16 tokens anyway.
  constexpr bool kScalePerGroup = kTokens <= 4;

  const int in = w.in_features;
  const int out = w.out_features;
  const int row_begin = blockIdx.y * rows_per_split;
  const int split_rows = min(in / kPack, row_begin + rows_per_split) - row_begin;
  const int input_begin = row_begin * kPack;
  const int split_inputs = split_rows * kPack;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int tile_col = blockIdx.x * kTileColumns;
  const int col = tile_col + lane * kColumnsPerThread;
  const bool col_ok = col < out;  // out % 4 == 0: the thread's 4 columns exist or none does

  // Each warp streams its own run of the split's rows. The first batch of loads is issued
  // before the staging below so that its latency overlaps it; later batches are loaded one
  // batch ahead of their use.
  const int rows_per_warp = (split_rows + kWarps - 1) / kWarps;
  const int warp_begin = min(split_rows, warp * rows_per_warp);
  const int warp_end = min(split_rows, warp_begin + rows_per_warp);
  const size_t row_stride = out / kColumnsPerThread;  // in int4
  const int4* qweight = reinterpret_cast<const int4*>(w.qweight) +
                        (static_cast<size_t>(row_begin) * out + col) / kColumnsPerThread;
  auto load_rows = [&](int4 (&words)[kRowsInFlight], int first) {
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      words[u] = make_int4(0, 0, 0, 0);
      if (col_ok && first + u < warp_end) words[u] = __ldg(qweight + (first + u) * row_stride);
    }
  };
  int4 current[kRowsInFlight];
  load_rows(current, warp_begin);

  extern __shared__ float4 dynamic_shared[];
  float* staged_x = reinterpret_cast<float*>(dynamic_shared);  // [split_inputs][kTokens]
  int* row_group = reinterpret_cast<int*>(staged_x + rows_per_split * kPack * kTokens);
  __shared__ float4 warp_sums[kWarps][32];  // [warp][column / 4] for the cross-warp reduction

  // Stage the split's activations (tokens past `tokens` as zeros, so they add nothing) and the
  // group of each row, or −1 when the row's inputs span several groups.
  // Each thread writes a run of up to 4 tokens of one input, so consecutive threads store
  // consecutive words (no bank conflicts) at the price of partly coalesced reads of x, which is
  // small and sits in L2.
  constexpr int kTokenRun = kTokens % 4 == 0 ? 4 : 1;
  for (int e = threadIdx.x; e < split_inputs * (kTokens / kTokenRun); e += kThreads) {
    const int i = e / (kTokens / kTokenRun);
    const int first_token = e % (kTokens / kTokenRun) * kTokenRun;
    float run[kTokenRun];
#pragma unroll
    for (int t = 0; t < kTokenRun; ++t) {
      const int token = first_token + t;
      run[t] = token < tokens
                   ? __half2float(x[static_cast<size_t>(token) * in + input_begin + i])
                   : 0.0f;
    }
    if constexpr (kTokenRun == 4) {
      reinterpret_cast<float4*>(staged_x)[e] = make_float4(run[0], run[1], run[2], run[3]);
    } else {
      staged_x[e] = run[0];
    }
  }
  for (int r = threadIdx.x; r < split_rows; r += kThreads) {
    const int* g_idx = w.g_idx + input_begin + r * kPack;
    const int group = g_idx[0];
    bool one_group = true;
#pragma unroll
    for (int k = 1; k < kPack; ++k) one_group &= g_idx[k] == group;
    row_group[r] = one_group ? ClampGroup(group, w.groups) : -1;
  }
  __syncthreads();

  float sums[kTokens][kColumnsPerThread] = {};
  float group_sums[kTokens][kColumnsPerThread] = {};  // used when kScalePerGroup
  GroupParams params = {};
  int loaded_group = -1;

  for (int r = warp_begin; r < warp_end; r += kRowsInFlight) {
    int4 next[kRowsInFlight];
    load_rows(next, r + kRowsInFlight);
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      const int row = r + u;
      if (row >= warp_end) break;  // the same for the whole warp
      const float* staged_row = staged_x + row * kPack * kTokens;
      const int group = row_group[row];
      if (group >= 0) {
        if (group != loaded_group) {
          if constexpr (kScalePerGroup) FlushGroupSums<kTokens>(group_sums, params, sums);
          LoadGroupParams<kBits>(w, group, col, col_ok, params);
          loaded_group = group;
        }
        if constexpr (kScalePerGroup) {
          AccumulateRow<kBits, kTokens, false>(current[u], params, staged_row, group_sums);
        } else {
          AccumulateRow<kBits, kTokens, true>(current[u], params, staged_row, sums);
        }
      } else {
        if constexpr (kScalePerGroup) FlushGroupSums<kTokens>(group_sums, params, sums);
        loaded_group = -1;
        AccumulateMixedRow<kBits, kTokens>(w, current[u], input_begin + row * kPack, col, col_ok,
                                           staged_row, sums);
      }
    }
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) current[u] = next[u];
  }
  if constexpr (kScalePerGroup) FlushGroupSums<kTokens>(group_sums, params, sums);

  // Add up the warps' sums for each column; then either write y (one split) or add into the
  // workspace, where the last split to arrive converts the total and re-zeroes it.
  const bool single_split = gridDim.y == 1;
  const float* column_sums = reinterpret_cast<const float*>(warp_sums);
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    if (t >= tokens) break;  // the same for the whole block
    warp_sums[warp][lane] = make_float4(sums[t][0], sums[t][1], sums[t][2], sums[t][3]);
    __syncthreads();
    const int c = tile_col + threadIdx.x;
    if (threadIdx.x < kTileColumns && c < out) {
      float total = 0.0f;
#pragma unroll
      for (int wp = 0; wp < kWarps; ++wp) total += column_sums[wp * kTileColumns + threadIdx.x];
      const size_t index = static_cast<size_t>(t) * out + c;
      if (single_split) {
        y[index] = __float2half_rn(total);
      } else {
        atomicAdd(partial_sums + index, total);
      }
    }
    __syncthreads();
  }
  if (single_split) return;

  FinishSplitK(partial_sums, arrivals, y, tokens, out, tile_col);
}

constexpr int kStagedActivationBytesFor(int token_tile) {
  return token_tile == kGptqMaxTokensPerLaunch ? kStagedActivationBytesFullTile
                                               : kStagedActivationBytes;
}

// Rows of one split whose staged activations fill `staged_bytes`.
int StagedRowsLimit(int bits, int token_tile, int staged_bytes) {
  return std::max(1, staged_bytes / static_cast<int>(sizeof(float) * layout::GptqCodesPerWord(bits) * token_tile));
}

size_t SharedBytes(int bits, int token_tile, int rows_per_split) {
  return static_cast<size_t>(rows_per_split) *
         (layout::GptqCodesPerWord(bits) * token_tile * sizeof(float) + sizeof(int));
}

// Calls f(integral_constant<bits>, integral_constant<tile>) for the instance serving them.
template <typename F>
CudaStatus WithInstance(int bits, int token_tile, F&& f) {
  using Four = std::integral_constant<int, 4>;
  using Eight = std::integral_constant<int, 8>;
  using One = std::integral_constant<int, 1>;
  using Small = std::integral_constant<int, 4>;
  using Full = std::integral_constant<int, kGptqMaxTokensPerLaunch>;
  if (bits == 4) {
    if (token_tile == 1) return f(Four(), One());
    if (token_tile == 4) return f(Four(), Small());
    return f(Four(), Full());
  }
  if (token_tile == 1) return f(Eight(), One());
  if (token_tile == 4) return f(Eight(), Small());
  return f(Eight(), Full());
}

// Measured (and the shared-memory opt-in made) once per device and instance.
constexpr int kCachedDevices = 64;
template <int kBits, int kTokens>
CudaStatus InstanceLimits(int device, KernelLimits& limits) {
  static std::atomic<int> cached_resident[kCachedDevices];  // 0: not measured yet
  static std::atomic<int> cached_rows[kCachedDevices];
  limits.split_row_multiple = 1;
  limits.min_split_rows = kWarps * kRowsInFlight;  // one batch of loads per warp
  limits.overhead_rows = 16;
  if (device < kCachedDevices && cached_resident[device].load(std::memory_order_acquire) > 0) {
    limits.max_split_rows = cached_rows[device].load(std::memory_order_relaxed);
    limits.resident_blocks = cached_resident[device].load(std::memory_order_relaxed);
    return CudaStatus();
  }
  int staged = kStagedActivationBytesFor(kTokens);
  if (staged > kStagedActivationBytes) {
    int opt_in = 0;
    QSHARD_CUDA_TRY(cudaDeviceGetAttribute(&opt_in, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    staged = std::clamp(opt_in - kSharedReserveBytes, kStagedActivationBytes, staged);
  }
  const int max_rows = StagedRowsLimit(kBits, kTokens, staged);
  const size_t most_shared = SharedBytes(kBits, kTokens, max_rows);
  QSHARD_CUDA_TRY(cudaFuncSetAttribute(GptqCudaCoreKernel<kBits, kTokens>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(most_shared)));
  int per_multiprocessor = 0;
  int multiprocessors = 0;
  QSHARD_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_multiprocessor, GptqCudaCoreKernel<kBits, kTokens>, kThreads, most_shared));
  QSHARD_CUDA_TRY(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  limits.max_split_rows = max_rows;
  limits.resident_blocks = std::max(1, per_multiprocessor) * multiprocessors;
  if (device < kCachedDevices) {
    cached_rows[device].store(limits.max_split_rows, std::memory_order_relaxed);
    cached_resident[device].store(limits.resident_blocks, std::memory_order_release);
  }
  return CudaStatus();
}

}  // namespace

int CudaCoreTokenTile(int tokens) {
  return tokens <= 1 ? 1 : tokens <= 4 ? 4 : kGptqMaxTokensPerLaunch;
}

CudaStatus CudaCoreLimits(int bits, int token_tile, int device, KernelLimits& limits) {
  return WithInstance(bits, token_tile, [&](auto b, auto t) {
    return InstanceLimits<decltype(b)::value, decltype(t)::value>(device, limits);
  });
}

CudaStatus LaunchCudaCore(const GptqMatrixView& w, const __half* x, int tokens, __half* y,
                          const GptqLaunchPlan& plan, const GptqWorkspace& workspace,
                          cudaStream_t stream) {
  return WithInstance(w.bits, plan.token_tile, [&](auto b, auto t) {
    constexpr int kBits = decltype(b)::value;
    constexpr int kTokens = decltype(t)::value;
    const dim3 grid(plan.column_blocks, plan.k_splits);
    GptqCudaCoreKernel<kBits, kTokens>
        <<<grid, kThreads, SharedBytes(kBits, kTokens, plan.rows_per_split), stream>>>(
            w, x, tokens, y, workspace.partial_sums(), workspace.arrivals(), plan.rows_per_split);
    QSHARD_CUDA_CHECK_LAUNCH("GptqCudaCoreKernel");
    return CudaStatus();
  });
}

}  // namespace qshard::gpu::internal
