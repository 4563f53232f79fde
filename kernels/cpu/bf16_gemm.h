// Products with bfloat16 inputs and float32 sums, for gradients that tolerate bfloat16's 2⁻⁸
// relative rounding of each input (AdaRound's E·H): twice float32's multiply-adds per
// instruction where the CPU has AVX-512 BF16 (vdpbf16ps). One definition of the arithmetic, so
// that every CPU gives the same bits:
//   - inputs rounded to bfloat16, to nearest even, a float32 subnormal to a zero of its sign;
//   - each output element summed over k in pairs, the odd term first:
//       c ← (c + a[2p+1]·b[2p+1]) + a[2p]·b[2p],  p = 0, 1, …  (an odd k ends on a zero pair),
//     each exact product added with one rounding to nearest even, a subnormal sum flushed to a
//     zero of its sign.
// That is what the instruction computes (its order is Intel's SDM's; the single rounding and the
// flushing were measured on AMD Zen 4 against the alternatives, and tests/kernels/bf16_gemm_test.cc
// holds it to the portable path, which computes it step by step with fmaf).
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

namespace qshard::kernels {

// B [k, n] in bfloat16, converted once to be multiplied many times: for each pair of rows
// (2p, 2p+1) and column j one 32-bit word, b[2p][j] in its low half and b[2p+1][j] in its high
// half (a zero row after an odd k), columns padded with zeros to a multiple of 16.
class Bf16Matrix {
 public:
  Bf16Matrix() = default;
  Bf16Matrix(const float* b, int64_t k, int64_t n);

  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  int64_t pairs() const { return (k_ + 1) / 2; }
  int64_t padded_n() const { return padded_n_; }
  // [pairs()][padded_n()] words.
  const uint32_t* words() const { return words_.data(); }
  // MinExponentField of its values.
  int min_exponent_field() const { return min_exponent_field_; }

 private:
  int64_t k_ = 0, n_ = 0, padded_n_ = 0;
  int min_exponent_field_ = 255;
  std::vector<uint32_t> words_;
};

// x rounded to bfloat16 as above (a NaN stays a quiet NaN), as a float; branch-free, so loops of
// it vectorize.
inline float RoundedToBf16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x), magnitude = bits & 0x7fffffffu;
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;  // an overflow carries into infinity
  const uint32_t out = magnitude < 0x00800000u ? bits & 0x80000000u                       // subnormal: a signed zero
                       : magnitude > 0x7f800000u ? (bits | 0x00400000u) & 0xffff0000u  // NaN: quiet, payload kept
                                                 : rounded;
  return std::bit_cast<float>(out);
}
// The same as its 16 bits.
inline uint16_t RoundToBf16(float x) { return static_cast<uint16_t>(std::bit_cast<uint32_t>(RoundedToBf16(x)) >> 16); }

// The smallest exponent field (biased, 1–254) among the nonzero finite values of a bfloat16
// array's float values; 255 if there is none. When two such minima add to at least 142, every
// nonzero product of the two arrays' values, being a multiple of 2^(e_a + e_b − 14) with
// unbiased exponents e, is at least 2^−126, and so is every nonzero sum of them: nothing can be
// subnormal, and the flushing can be skipped without changing a bit.
int MinExponentField(const float* bf16_values, int64_t count);

// C[m, n] = A[m, k] · B as defined above; A's rows lda floats apart, C's n. Single-threaded; no
// allocation once a thread has seen its largest k and n. On vdpbf16ps where the CPU has it
// (Bf16Accelerated), else MultiplyBf16Emulated: the same bits either way.
void MultiplyBf16(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c);
bool Bf16Accelerated();
// The definition step by step with fmaf, vectorized over columns (AVX2 + FMA where present): a
// third to a half of float32's GEMM rate, for CPUs without AVX-512 BF16.
void MultiplyBf16Emulated(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c);
// The definition element by element, plainly: the reference both paths are held to.
void MultiplyBf16Reference(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c);

}  // namespace qshard::kernels
