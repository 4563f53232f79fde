// The PTX instructions of kernels/cuda/ptx.cuh in the host emulation of CUDA, each as the PTX ISA
// documents it: the warp-wide mma exchanges every lane's fragments through the warp's slots;
// cp.async copies are held per thread and made only when a wait_group completes their group, so
// that a kernel reading shared memory before waiting sees stale data here as it could on a GPU.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>

#include "kernels/cuda/emulation/emulated_cuda.h"

namespace qshard_emu {

void CopyAsync16(void* shared, const void* global, bool valid);
void CommitAsync();
void WaitAsync(int pending);

}  // namespace qshard_emu

namespace qshard::gpu::ptx {

// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32. Lane l holds, with g = l / 4 and t = l % 4:
// A (16×16) registers {(g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)}, the lower
// column in the low half; B (16×8) registers {(2t..2t+1, g), (2t+8..2t+9, g)}; C and D
// {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}. The 16 fp16 products are exact in double and
// summed there, then added to C and rounded once.
inline void MmaM16N8K16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  struct Fragments {
    uint32_t a[4];
    uint32_t b[2];
  };
  static_assert(sizeof(Fragments) <= qshard_emu::kWarpSlotBytes);
  const int lane = qshard_emu::LaneId(), bank = qshard_emu::NextExchangeBank();
  const Fragments mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  std::memcpy(qshard_emu::WarpSlot(bank, lane), &mine, sizeof(mine));
  qshard_emu::WarpBarrier();
  const auto half_at = [](uint32_t reg, int k) {
    return static_cast<double>(float(__ushort_as_half(static_cast<unsigned short>(reg >> (16 * (k % 2))))));
  };
  const auto fragments = [bank](int l) {
    Fragments f;
    std::memcpy(&f, qshard_emu::WarpSlot(bank, l), sizeof(f));
    return f;
  };
  const auto a_at = [&](int row, int k) {
    return half_at(fragments(row % 8 * 4 + k % 8 / 2).a[(row >= 8) + 2 * (k >= 8)], k);
  };
  const auto b_at = [&](int k, int col) { return half_at(fragments(col * 4 + k % 8 / 2).b[k >= 8], k); };
  const int g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
    double sum = 0.0;
    for (int k = 0; k < 16; ++k) sum += a_at(row, k) * b_at(k, col);
    d[e] = static_cast<float>(sum + d[e]);
  }
}

inline void CopyAsync16(void* shared, const void* global, bool valid) { qshard_emu::CopyAsync16(shared, global, valid); }
inline void CommitAsync() { qshard_emu::CommitAsync(); }
template <int kPending>
void WaitAsync() {
  qshard_emu::WaitAsync(kPending);
}

inline uint64_t GlobalTimerNanoseconds() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace qshard::gpu::ptx
