// The tensor-core (mma.sync m16n8k16) layout of a 4-bit GPTQ layer, converted once at load time
// from the checkpoint layout (gptq_packed.h) by RepackGptqW4ForMma. The CUDA kernel
// (kernels/cuda/gptq_mma_w4_kernel.cu), its host emulation (tests/kernels) and the repack all
// take their index math from this file. Plain C++ so that nvcc and the host build share it.
//
//   Inputs are reordered so that each group's inputs are contiguous, in increasing input order
//   (act-order's g_idx becomes one run per group), and every group's run is padded with zero
//   codes to `group_steps` steps of 16 inputs (the longest group, rounded up); the whole is
//   padded to k-tiles of 64. `perm[k]` is the checkpoint input at padded position k, −1 for
//   padding: the kernel gathers x through it (padding reads 0), so a padded weight adds nothing.
//   With contiguous groups of a multiple of 16 inputs (or one group) the order is `identity`:
//   step j of k-tile t holds inputs 64t + 16j .. + 15, in the position order below.
//
//   tiles  uint32 [column tile (16 outputs)][k-tile (64 inputs)][lane 32][step 4]: the 16 bytes
//          of one lane are its A fragments (16 columns × 16 inputs) for the k-tile's 4 mma steps,
//          so a warp loads one k-tile as 512 contiguous bytes, one 16-byte load per lane.
//          Word `step` of lane l holds 8 codes: nibble n feeds A register n % 4, half n / 4, of
//          the PTX fragment (its column and position: MmaW4NibbleColumn, MmaW4NibblePosition).
//   params uint32 [column tile][group][row 8][2]: word 0 the fp16 scales of columns row and
//          row + 8 (low, high half), word 1 their true zero points (stored + 1; low, high 16 bits).
//          Padded columns have scale 0 and zero 0.
//
// Positions within a k-tile are not inputs in order: the mma's k index is mapped so that a
// lane's activations for a whole k-tile are 16 consecutive staged halves. Slot s ∈ 0..3 of lane l
// in step j (k = 2p, 2p + 1, 2p + 8, 2p + 9 with p = l % 4) is position 16p + 4j + s; the r-th
// input (r ∈ 0..15) of step j sits at position 16·(r / 4) + 4j + r % 4. A step's 16 inputs
// belong to one group, which is what per-group scaling needs. A dot product does not care in
// which order its terms are added, and A and B use the same map, so this is exact. The kernel
// stages x in position order (gathering through perm, or 4 inputs at a time for the identity).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/layout/gptq_packed.h"

namespace qshard::layout {

inline constexpr int kMmaTileColumns = 16;  // mma M: output columns per tile
inline constexpr int kMmaStepInputs = 16;   // mma K
inline constexpr int kMmaSteps = 4;         // steps per k-tile: one 32-bit word each per lane
inline constexpr int kMmaTileInputs = kMmaStepInputs * kMmaSteps;
inline constexpr int kMmaLanes = 32;
inline constexpr int kMmaTileWords = kMmaLanes * kMmaSteps;  // 512 bytes per k-tile
inline constexpr int kMmaParamWords = 2 * (kMmaTileColumns / 2);  // per column tile and group
inline constexpr int kMmaW4Bits = 4;

// --- The PTX fragment of mma.m16n8k16 with fp16 A (row-major 16×16) and B (16×8) ---
// A register a ∈ 0..3, half h ∈ 0..1 of lane l holds row l / 4 + 8·(a % 2), k 2·(l % 4) + h + 8·(a / 2).
QSHARD_LAYOUT_FN int MmaARow(int lane, int reg) { return lane / 4 + 8 * (reg % 2); }
QSHARD_LAYOUT_FN int MmaAK(int lane, int reg, int half) { return 2 * (lane % 4) + half + 8 * (reg / 2); }
// B register b ∈ 0..1, half h of lane l holds k 2·(l % 4) + h + 8·b, column (token) l / 4.
QSHARD_LAYOUT_FN int MmaBK(int lane, int reg, int half) { return 2 * (lane % 4) + half + 8 * reg; }
// D register d ∈ 0..3 of lane l holds row l / 4 + 8·(d / 2), column (token) 2·(l % 4) + d % 2.
QSHARD_LAYOUT_FN int MmaDRow(int lane, int reg) { return lane / 4 + 8 * (reg / 2); }
QSHARD_LAYOUT_FN int MmaDColumn(int lane, int reg) { return 2 * (lane % 4) + reg % 2; }

// --- This layout's choices ---
// The slot (0..3) of a lane's k value within a step, and the k-tile position of slot s of lane l
// in step j: a lane's 16 activations of a k-tile are consecutive.
QSHARD_LAYOUT_FN int MmaKSlot(int k) { return k % 2 + 2 * (k / 8); }
QSHARD_LAYOUT_FN int MmaSlotPosition(int lane, int step, int slot) { return 16 * (lane % 4) + 4 * step + slot; }
// The k-tile position of the r-th input of step j, and the step of a position.
QSHARD_LAYOUT_FN int MmaStepInputPosition(int step, int r) { return 16 * (r / 4) + 4 * step + r % 4; }
QSHARD_LAYOUT_FN int MmaPositionStep(int position) { return position % 16 / 4; }
// With the identity order: the input (within its k-tile) at a position, and the position of an
// input (counted from any k-tile boundary; 4 consecutive inputs from a multiple of 4 stay together).
QSHARD_LAYOUT_FN int MmaIdentityInput(int position) {
  return 16 * MmaPositionStep(position) + 4 * (position / 16) + position % 4;
}
QSHARD_LAYOUT_FN int64_t MmaIdentityPosition(int64_t input) {
  return input / kMmaTileInputs * kMmaTileInputs + MmaStepInputPosition(static_cast<int>(input % kMmaTileInputs / 16),
                                                                         static_cast<int>(input % 16));
}
// Nibble n of a lane's word feeds A register n % 4, half n / 4, so that one mask pulls a whole
// register out of the word: registers 0 and 2 (column row) sit in nibbles (0, 4) and (2, 6),
// registers 1 and 3 (column row + 8) in (1, 5) and (3, 7).
QSHARD_LAYOUT_FN int MmaNibbleReg(int nibble) { return nibble % 4; }
QSHARD_LAYOUT_FN int MmaNibbleHalf(int nibble) { return nibble / 4; }
QSHARD_LAYOUT_FN int MmaW4NibbleColumn(int lane, int nibble) { return MmaARow(lane, MmaNibbleReg(nibble)); }
QSHARD_LAYOUT_FN int MmaW4NibblePosition(int lane, int step, int nibble) {
  return MmaSlotPosition(lane, step, MmaKSlot(MmaAK(lane, MmaNibbleReg(nibble), MmaNibbleHalf(nibble))));
}
// How the kernel pulls A register `reg` out of a word: (word >> shift) & mask leaves the two
// codes in the low bits of each half, times 16 where scaled_by_16 (bit 4 of each half).
QSHARD_LAYOUT_FN int MmaRegShift(int reg) { return 8 * (reg / 2); }
QSHARD_LAYOUT_FN uint32_t MmaRegMask(int reg) { return reg % 2 == 0 ? 0x000F000Fu : 0x00F000F0u; }
QSHARD_LAYOUT_FN bool MmaRegScaledBy16(int reg) { return reg % 2 == 1; }

// The unpacking's per-column constants as fp16 pairs, from a true zero point z ∈ [0, 16]:
// 1024 + z (ulp 1 in [1024, 2048)) and −(64 + z) (ulp 1/16 in [64, 128)). A register's biased
// codes (mask | fp16 1024 pairs) give q − z as `biased − Plus1024` or `biased · 1/16 + Minus64`.
QSHARD_LAYOUT_FN uint32_t MmaPlus1024Pair(uint32_t zero) { return (0x6400u + zero) * 0x00010001u; }
QSHARD_LAYOUT_FN uint32_t MmaMinus64Pair(uint32_t zero) { return (0xD400u + 16u * zero) * 0x00010001u; }
QSHARD_LAYOUT_FN uint32_t MmaBiasedCodes(uint32_t word, int reg) { return ((word >> MmaRegShift(reg)) & MmaRegMask(reg)) | 0x64006400u; }

// The group of 16-input step `step` (padded positions past the last group count as the last).
QSHARD_LAYOUT_FN int64_t MmaStepGroup(int64_t step, int64_t group_steps, int64_t groups) {
  return step / group_steps < groups - 1 ? step / group_steps : groups - 1;
}

// The most groups a run of `steps` steps starting at a multiple of kMmaSteps can touch (the
// kernel stages that many groups' parameters per warp).
QSHARD_LAYOUT_FN int64_t MmaSplitGroups(int64_t steps, int64_t group_steps, int64_t groups) {
  return (steps - 1) / group_steps + 2 < groups ? (steps - 1) / group_steps + 2 : groups;
}

// Word offsets of lane `lane`'s 4 words of one k-tile, and of one row's parameter pair.
QSHARD_LAYOUT_FN int64_t MmaTileWordOffset(int64_t column_tile, int64_t k_tile, int64_t k_tiles, int lane) {
  return (column_tile * k_tiles + k_tile) * kMmaTileWords + int64_t{lane} * kMmaSteps;
}
QSHARD_LAYOUT_FN int64_t MmaParamWordOffset(int64_t column_tile, int64_t group, int64_t groups, int row) {
  return (column_tile * groups + group) * kMmaParamWords + 2 * int64_t{row};
}

static_assert(kMmaTileWords * 4 == 512 && kMmaParamWords == 16, "one k-tile is 512 bytes, one group 64");
static_assert(MmaW4NibbleColumn(5, 1) == 9 && MmaW4NibbleColumn(5, 2) == 1, "registers 1, 3: row + 8");
static_assert(MmaW4NibblePosition(1, 0, 0) == 16 && MmaW4NibblePosition(1, 0, 4) == 17 &&
                  MmaW4NibblePosition(1, 0, 2) == 18 && MmaW4NibblePosition(1, 0, 6) == 19 &&
                  MmaW4NibblePosition(3, 3, 7) == 63,
              "a lane's 4 slots of step j are positions 16p + 4j .. 16p + 4j + 3");
static_assert(MmaPositionStep(MmaStepInputPosition(3, 13)) == 3 && MmaIdentityInput(MmaStepInputPosition(2, 9)) == 41 &&
                  MmaIdentityPosition(64 + 41) == 64 + MmaStepInputPosition(2, 9),
              "positions of a step's inputs");
static_assert(MmaBK(6, 1, 1) == MmaAK(6, 2, 1), "B register b pairs with A registers 2b, 2b + 1");
static_assert(MmaPlus1024Pair(16) == 0x64106410u && MmaMinus64Pair(16) == 0xD500D500u, "1040 and -80 in fp16");
static_assert(MmaRegMask(1) == 0x00F000F0u && MmaRegShift(3) == 8, "nibbles (3, 7) sit at bits 12, 28");

// --- Shape and storage ---
struct MmaW4Shape {
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t groups = 0;
  int64_t group_steps = 0;    // 16-input steps per group's run
  int64_t padded_inputs = 0;  // multiple of kMmaTileInputs
  int64_t column_tiles = 0;
  int64_t k_tiles = 0;
  bool identity = false;  // perm[k] == k for k < in_features (−1 beyond)

  int64_t TileWords() const { return column_tiles * k_tiles * kMmaTileWords; }
  int64_t ParamWords() const { return column_tiles * groups * kMmaParamWords; }
};

// The shape of a layer whose largest group has `longest_group` inputs (identity still false).
inline MmaW4Shape MmaW4ShapeFor(int64_t in_features, int64_t out_features, int64_t groups, int64_t longest_group) {
  MmaW4Shape s;
  s.in_features = in_features;
  s.out_features = out_features;
  s.groups = groups;
  s.group_steps = std::max<int64_t>(1, (longest_group + kMmaStepInputs - 1) / kMmaStepInputs);
  s.padded_inputs = (groups * s.group_steps * kMmaStepInputs + kMmaTileInputs - 1) / kMmaTileInputs * kMmaTileInputs;
  s.column_tiles = (out_features + kMmaTileColumns - 1) / kMmaTileColumns;
  s.k_tiles = s.padded_inputs / kMmaTileInputs;
  return s;
}

struct MmaW4Layer {
  MmaW4Shape shape;
  std::vector<uint32_t> tiles;
  std::vector<uint32_t> params;
  std::vector<int32_t> perm;  // [padded_inputs]
};

// Converts a 4-bit layer of the checkpoint layout. Returns "" or what is wrong with `w`
// (another width, a shape the checkpoint layout cannot hold, a g_idx entry out of range).
inline std::string RepackGptqW4ForMma(const GptqPackedView& w, MmaW4Layer& out) {
  if (w.bits != kMmaW4Bits) return "the mma layout holds 4-bit layers only";
  if (!GptqShapeFits(w.bits, w.in_features, w.out_features) || w.groups < 1) return "shape does not fit the layout";
  std::vector<int64_t> count(w.groups, 0);
  for (int64_t i = 0; i < w.in_features; ++i) {
    if (w.g_idx[i] < 0 || w.g_idx[i] >= w.groups) return "g_idx[" + std::to_string(i) + "] is out of range";
    ++count[w.g_idx[i]];
  }
  MmaW4Shape& s = out.shape;
  s = MmaW4ShapeFor(w.in_features, w.out_features, w.groups, *std::max_element(count.begin(), count.end()));

  // Each group's inputs in increasing order from step group · group_steps on.
  out.perm.assign(s.padded_inputs, -1);
  std::vector<int64_t> filled(w.groups, 0);
  for (int64_t i = 0; i < w.in_features; ++i) {
    const int64_t g = w.g_idx[i];
    const int64_t j = filled[g]++;
    const int64_t step = g * s.group_steps + j / kMmaStepInputs;
    out.perm[step / kMmaSteps * kMmaTileInputs + MmaStepInputPosition(step % kMmaSteps, j % kMmaStepInputs)] =
        static_cast<int32_t>(i);
  }
  s.identity = true;
  for (int64_t k = 0; k < s.padded_inputs; ++k) {
    const int64_t input = k / kMmaTileInputs * kMmaTileInputs + MmaIdentityInput(k % kMmaTileInputs);
    s.identity &= out.perm[k] == (input < w.in_features ? input : -1);
  }

  out.tiles.assign(s.TileWords(), 0u);
  for (int64_t ct = 0; ct < s.column_tiles; ++ct) {
    for (int64_t kt = 0; kt < s.k_tiles; ++kt) {
      for (int lane = 0; lane < kMmaLanes; ++lane) {
        uint32_t* words = out.tiles.data() + MmaTileWordOffset(ct, kt, s.k_tiles, lane);
        for (int step = 0; step < kMmaSteps; ++step) {
          for (int nibble = 0; nibble < 8; ++nibble) {
            const int64_t o = ct * kMmaTileColumns + MmaW4NibbleColumn(lane, nibble);
            const int32_t i = out.perm[kt * kMmaTileInputs + MmaW4NibblePosition(lane, step, nibble)];
            if (o < w.out_features && i >= 0) words[step] |= w.Code(i, o) << (4 * nibble);
          }
        }
      }
    }
  }
  out.params.assign(s.ParamWords(), 0u);
  for (int64_t ct = 0; ct < s.column_tiles; ++ct) {
    for (int64_t g = 0; g < w.groups; ++g) {
      for (int row = 0; row < kMmaTileColumns / 2; ++row) {
        uint32_t* pair = out.params.data() + MmaParamWordOffset(ct, g, w.groups, row);
        for (int high = 0; high < 2; ++high) {
          const int64_t o = ct * kMmaTileColumns + row + 8 * high;
          if (o >= w.out_features) continue;
          pair[0] |= uint32_t{w.ScaleBits(g, o)} << (16 * high);
          pair[1] |= static_cast<uint32_t>(w.Zero(g, o)) << (16 * high);
        }
      }
    }
  }
  return "";
}

}  // namespace qshard::layout
