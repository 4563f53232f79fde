// The CPU kernels' tiled layout of a GPTQ layer, converted from the checkpoint layout
// (gptq_packed.h) once at load time. One layout serves every CPU kernel: the fp32 path
// (AVX2/AVX-512) and the int8-activation path (VNNI vpdpbusd, AVX2 vpmaddwd).
//
//   Inputs are reordered so that each group's inputs are contiguous (act-order's g_idx becomes a
//   run per group) and each group's run is padded with zero codes to whole blocks; the kernels
//   gather the activations through the same order (padding reads 0).
//   Outputs are cut into tiles of kTileColumns; the last tile is padded with zero codes.
//   codes: [tile][block][kBlockBytes]: one block holds RowsPerBlock(bits) inputs of the tile's 16
//   outputs; 32-bit lane c of the block is output c, and input r of the block sits in byte r % 4
//   of that lane at bit offset ContainerBits(bits) · (r / 4) within the byte. So a lane holds 4
//   consecutive inputs per field, which is the operand vpdpbusd sums, and an fp32 kernel
//   extracts input r with one shift and one mask.
//   3-bit codes use the 4-bit container (4/3 of the bytes; the checkpoint keeps 3 bits).
#pragma once

#include <cstdint>

namespace qshard::layout {

inline constexpr int kTileColumns = 16;
inline constexpr int kLaneBytes = 4;  // inputs per field: the int8 dot-product width
inline constexpr int kBlockBytes = kTileColumns * kLaneBytes;

inline constexpr int ContainerBits(int bits) { return bits == 3 ? 4 : bits; }
inline constexpr int FieldsPerByte(int bits) { return 8 / ContainerBits(bits); }
inline constexpr int RowsPerBlock(int bits) { return kLaneBytes * FieldsPerByte(bits); }
// Bit offset of block input r within its output's 32-bit lane.
inline constexpr int RowShift(int bits, int r) { return 8 * (r % kLaneBytes) + ContainerBits(bits) * (r / kLaneBytes); }

static_assert(kBlockBytes == 64, "one block is one 512-bit vector or two 256-bit ones");
static_assert(RowsPerBlock(8) == 4 && RowsPerBlock(4) == 8 && RowsPerBlock(3) == 8 && RowsPerBlock(2) == 16,
              "inputs per block");
static_assert(RowShift(4, 5) == 12 && RowShift(2, 15) == 30 && RowShift(8, 3) == 24, "field offsets");

}  // namespace qshard::layout
