// The tensor-core layout of 4-bit GPTQ layers (kernels/layout/gptq_mma_w4.h), on the host: the
// repack is a bijection (unpacking it gives back the checkpoint tensors bit for bit, padding
// holds zero codes), and an emulation of GptqMmaW4Kernel that reads the repacked buffers lane by
// lane as the kernel does (16-byte word vectors, the fp16 unpacking of each A register, the
// activation slots, the PTX fragment positions, the per-group scaling, the splits) reproduces
// the float64 product of the checkpoint's weights. Shapes are awkward on purpose: partial column
// tiles and k-tiles, groups that are not multiples of 16, act-order and per-channel.
#include "kernels/layout/gptq_mma_w4.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "tests/quant/random_quantized_weight.h"
#include "worker/quant/gptq_pack.h"

namespace qshard::layout {
namespace {

struct Case {
  int64_t out, in, group_size;  // group_size == in: per channel
  bool act_order;
  bool identity;  // whether the repack should find perm to be the identity
};

const Case kCases[] = {
    {24, 72, 7, true, false},      {136, 264, 128, true, false}, {200, 1000, 100, false, false},
    {272, 320, 32, false, true},   {48, 512, 128, false, true},  {40, 96, 96, false, true},
    {16, 1024, 32, true, false},   {264, 2056, 40, false, false}, {8, 8, 8, false, true},
    {120, 4104, 4104, false, true},
};

GptqLinearTensors Packed(const Case& c, uint32_t seed) {
  const QuantizedWeight weight =
      testing_support::RandomQuantizedWeight(kMmaW4Bits, c.out, c.in, c.group_size, c.act_order, seed);
  auto packed = PackGptq(weight);
  EXPECT_TRUE(packed.ok()) << packed.status();
  return *std::move(packed);
}

MmaW4Layer Repacked(const GptqLinearTensors& packed) {
  MmaW4Layer layer;
  EXPECT_EQ(RepackGptqW4ForMma(PackedView(packed), layer), "");
  return layer;
}

// The inverse of the repack: the checkpoint tensors back, and every (input, output) seen once.
GptqLinearTensors Unpack(const MmaW4Layer& layer, int64_t& padding_codes) {
  const MmaW4Shape& s = layer.shape;
  GptqLinearTensors t;
  t.bits = kMmaW4Bits;
  t.in_features = s.in_features;
  t.out_features = s.out_features;
  t.groups = s.groups;
  std::vector<uint32_t> qweight(GptqQweightRows(s.in_features, 4) * s.out_features, 0u);
  std::vector<int> seen(s.in_features * s.out_features, 0);
  padding_codes = 0;
  for (int64_t ct = 0; ct < s.column_tiles; ++ct) {
    for (int64_t kt = 0; kt < s.k_tiles; ++kt) {
      for (int lane = 0; lane < kMmaLanes; ++lane) {
        const uint32_t* words = layer.tiles.data() + MmaTileWordOffset(ct, kt, s.k_tiles, lane);
        for (int step = 0; step < kMmaSteps; ++step) {
          for (int nibble = 0; nibble < 8; ++nibble) {
            const uint32_t code = (words[step] >> (4 * nibble)) & 0xFu;
            const int64_t o = ct * kMmaTileColumns + MmaW4NibbleColumn(lane, nibble);
            const int32_t i = layer.perm[kt * kMmaTileInputs + MmaW4NibblePosition(lane, step, nibble)];
            if (o >= s.out_features || i < 0) {
              padding_codes += code;
              continue;
            }
            ++seen[i * s.out_features + o];
            GptqWriteBits(qweight.data() + o, s.out_features, i, 4, code);
          }
        }
      }
    }
  }
  for (int v : seen) EXPECT_EQ(v, 1);
  t.qweight.assign(qweight.begin(), qweight.end());
  t.g_idx.assign(s.in_features, -1);
  for (int64_t k = 0; k < s.padded_inputs; ++k) {
    const int64_t step = k / kMmaTileInputs * kMmaSteps + MmaPositionStep(k % kMmaTileInputs);
    if (layer.perm[k] >= 0) t.g_idx[layer.perm[k]] = static_cast<int32_t>(step / s.group_steps);
  }
  const int64_t zero_words = GptqQzerosCols(s.out_features, 4);
  std::vector<uint32_t> qzeros(s.groups * zero_words, 0u);
  t.scales.assign(s.groups * s.out_features, 0);
  for (int64_t g = 0; g < s.groups; ++g) {
    for (int64_t o = 0; o < s.out_features; ++o) {
      const uint32_t* pair = layer.params.data() + MmaParamWordOffset(o / kMmaTileColumns, g, s.groups, o % 8);
      const int shift = 16 * (o % kMmaTileColumns / 8);
      t.scales[g * s.out_features + o] = static_cast<uint16_t>(pair[0] >> shift);
      GptqWriteBits(qzeros.data() + g * zero_words, 1, o, 4, ((pair[1] >> shift) & 0xFFFFu) - kGptqZeroOffset);
    }
  }
  t.qzeros.assign(qzeros.begin(), qzeros.end());
  return t;
}

TEST(GptqMmaW4LayoutTest, RepackIsABijection) {
  uint32_t seed = 1;
  for (const Case& c : kCases) {
    SCOPED_TRACE(testing::Message() << "out " << c.out << " in " << c.in << " group " << c.group_size
                                    << (c.act_order ? " act-order" : ""));
    const GptqLinearTensors packed = Packed(c, seed++);
    const MmaW4Layer layer = Repacked(packed);
    EXPECT_EQ(layer.shape.identity, c.identity);
    EXPECT_EQ(layer.shape.padded_inputs % kMmaTileInputs, 0);
    int64_t padding_codes = -1;
    const GptqLinearTensors back = Unpack(layer, padding_codes);
    EXPECT_EQ(padding_codes, 0);
    EXPECT_EQ(back.qweight, packed.qweight);
    EXPECT_EQ(back.qzeros, packed.qzeros);
    EXPECT_EQ(back.scales, packed.scales);
    EXPECT_EQ(back.g_idx, packed.g_idx);
  }
}

TEST(GptqMmaW4LayoutTest, RejectsWhatItCannotHold) {
  const GptqLinearTensors packed = Packed({16, 64, 32, false, true}, 3);
  GptqPackedView view = PackedView(packed);
  MmaW4Layer layer;
  view.bits = 8;
  EXPECT_NE(RepackGptqW4ForMma(view, layer), "");
  view.bits = 4;
  std::vector<int32_t> bad_g_idx = packed.g_idx;
  bad_g_idx[5] = static_cast<int32_t>(packed.groups);
  view.g_idx = bad_g_idx.data();
  EXPECT_NE(RepackGptqW4ForMma(view, layer), "");
}

// What one lane holds for one group: GptqMmaW4Kernel's GroupTerms.
struct LaneTerms {
  double scale[2];  // columns row, row + 8
  uint32_t plus_1024_low;
  uint32_t minus_64_high;
};

LaneTerms LoadTerms(const uint32_t* pair) {
  return {{HalfToFloat(static_cast<uint16_t>(pair[0] & 0xFFFFu)), HalfToFloat(static_cast<uint16_t>(pair[0] >> 16))},
          MmaPlus1024Pair(pair[1] & 0xFFFFu),
          MmaMinus64Pair(pair[1] >> 16)};
}

float HalfOf(uint32_t pair, int half) { return HalfToFloat(static_cast<uint16_t>(pair >> (16 * half))); }

// The kernel's Unpack, value by value: biased codes minus (1024 + z), or times 1/16 plus −(64 + z).
double UnpackedValue(uint32_t word, int reg, int half, const LaneTerms& terms) {
  const float biased = HalfOf(MmaBiasedCodes(word, reg), half);
  return MmaRegScaledBy16(reg) ? biased / 16.0f + HalfOf(terms.minus_64_high, half)
                               : biased - HalfOf(terms.plus_1024_low, half);
}

// GptqMmaW4Kernel on the host for activations x [tokens, in], with splits of `tiles_per_split`
// k-tiles: the same staging, the same reads per lane, mma products formed from the fragments'
// PTX positions, the same group walk. Returns y [tokens, out] in float64.
std::vector<double> EmulateKernel(const MmaW4Layer& layer, const std::vector<float>& x, int tokens,
                                  int tiles_per_split, bool gather) {
  const MmaW4Shape& s = layer.shape;
  std::vector<double> y(tokens * s.out_features, 0.0);
  for (int64_t tile_begin = 0; tile_begin < s.k_tiles; tile_begin += tiles_per_split) {
    const int64_t tiles = std::min<int64_t>(tiles_per_split, s.k_tiles - tile_begin);
    // Staged activations [token][split position]: gathered through perm, or (identity order
    // only) 4 inputs at a time to their positions: the kernel's plan.gather.
    const int64_t split_inputs = tiles * kMmaTileInputs;
    std::vector<float> staged(tokens * split_inputs, 0.0f);
    for (int t = 0; t < tokens; ++t) {
      for (int64_t k = 0; k < split_inputs; ++k) {
        const int64_t position = gather ? k : MmaIdentityPosition(k);
        const int64_t input = gather ? layer.perm[tile_begin * kMmaTileInputs + k] : tile_begin * kMmaTileInputs + k;
        if (input >= 0 && input < s.in_features) staged[t * split_inputs + position] = x[t * s.in_features + input];
      }
    }
    const int64_t step_begin = tile_begin * kMmaSteps;
    const int64_t group_low = MmaStepGroup(step_begin, s.group_steps, s.groups);
    const int64_t group_high = MmaStepGroup(step_begin + tiles * kMmaSteps - 1, s.group_steps, s.groups);
    EXPECT_LE(group_high - group_low + 1, MmaSplitGroups(tiles_per_split * int64_t{kMmaSteps}, s.group_steps, s.groups));
    for (int64_t ct = 0; ct < s.column_tiles; ++ct) {
      // The warp's staged parameters: groups group_low .. group_high, copied as one run.
      const uint32_t* first = layer.params.data() + MmaParamWordOffset(ct, group_low, s.groups, 0);
      const std::vector<uint32_t> staged_params(first, first + (group_high - group_low + 1) * kMmaParamWords);
      int64_t group = group_low;
      int64_t steps_left = s.group_steps - step_begin % s.group_steps;
      std::vector<LaneTerms> terms(kMmaLanes);
      auto load_terms = [&]() {
        for (int lane = 0; lane < kMmaLanes; ++lane) {
          terms[lane] = LoadTerms(staged_params.data() + (group - group_low) * kMmaParamWords + 2 * (lane / 4));
        }
      };
      load_terms();
      std::vector<double> sums(kMmaLanes * 2 * 4, 0.0), group_sums(kMmaLanes * 2 * 4, 0.0);
      auto next_group = [&]() {
        for (int lane = 0; lane < kMmaLanes; ++lane) {
          for (int e = 0; e < 8; ++e) {
            sums[lane * 8 + e] += terms[lane].scale[e % 4 / 2] * group_sums[lane * 8 + e];
            group_sums[lane * 8 + e] = 0.0;
          }
        }
        group = std::min(group + 1, group_high);
        steps_left = s.group_steps;
        load_terms();
      };
      for (int64_t tile = 0; tile < tiles; ++tile) {
        for (int step = 0; step < kMmaSteps; ++step) {
          double a[16][16] = {};
          double b[2][16][8] = {};
          for (int lane = 0; lane < kMmaLanes; ++lane) {
            const uint32_t word =
                layer.tiles[MmaTileWordOffset(ct, tile_begin + tile, s.k_tiles, lane) + step];
            for (int reg = 0; reg < 4; ++reg) {
              for (int half = 0; half < 2; ++half) {
                a[MmaARow(lane, reg)][MmaAK(lane, reg, half)] = UnpackedValue(word, reg, half, terms[lane]);
              }
            }
            for (int tt = 0; tt < 2; ++tt) {
              const int token = tt * 8 + lane / 4;
              if (token >= tokens) continue;
              const float* lane_x = staged.data() + token * tiles * kMmaTileInputs + tile * kMmaTileInputs +
                                    MmaSlotPosition(lane, 0, 0);
              for (int reg = 0; reg < 2; ++reg) {
                for (int half = 0; half < 2; ++half) {
                  b[tt][MmaBK(lane, reg, half)][lane / 4] = lane_x[2 * (2 * step + reg) + half];
                }
              }
            }
          }
          for (int lane = 0; lane < kMmaLanes; ++lane) {
            for (int tt = 0; tt < 2; ++tt) {
              for (int d = 0; d < 4; ++d) {
                double dot = 0.0;
                for (int k = 0; k < 16; ++k) dot += a[MmaDRow(lane, d)][k] * b[tt][k][MmaDColumn(lane, d)];
                group_sums[lane * 8 + tt * 4 + d] += dot;
              }
            }
          }
          if (--steps_left == 0) next_group();
        }
      }
      next_group();
      for (int lane = 0; lane < kMmaLanes; ++lane) {
        for (int tt = 0; tt < 2; ++tt) {
          for (int d = 0; d < 4; ++d) {
            const int64_t col = ct * kMmaTileColumns + MmaDRow(lane, d);
            const int token = tt * 8 + MmaDColumn(lane, d);
            if (col < s.out_features && token < tokens) y[token * s.out_features + col] += sums[lane * 8 + tt * 4 + d];
          }
        }
      }
    }
  }
  return y;
}

TEST(GptqMmaW4LayoutTest, KernelEmulationMatchesTheCheckpointProduct) {
  const int kTokens[] = {1, 5, 16, 9};
  const int kSplits[] = {1, 3, 1000};
  uint32_t seed = 100;
  int index = 0;
  for (const Case& c : kCases) {
    const int tokens = kTokens[index % 4];
    const int tiles_per_split = kSplits[index++ % 3];
    SCOPED_TRACE(testing::Message() << "out " << c.out << " in " << c.in << " group " << c.group_size
                                    << (c.act_order ? " act-order" : "") << " tokens " << tokens << " split "
                                    << tiles_per_split);
    const GptqLinearTensors packed = Packed(c, seed++);
    const MmaW4Layer layer = Repacked(packed);
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(tokens * c.in);
    for (float& v : x) v = HalfToFloat(FloatToHalf(normal(rng)));  // fp16 activations
    const GptqPackedView view = PackedView(packed);
    for (bool gather : {true, false}) {
      if (!gather && !layer.shape.identity) continue;  // the vector path serves the identity order only
      SCOPED_TRACE(gather ? "gathered x" : "vector x");
      const std::vector<double> y = EmulateKernel(layer, x, tokens, tiles_per_split, gather);
      for (int t = 0; t < tokens; ++t) {
        for (int64_t o = 0; o < c.out; ++o) {
          double ref = 0.0;
          double magnitude = 0.0;
          for (int64_t i = 0; i < c.in; ++i) {
            const int32_t g = view.g_idx[i];
            const double w =
                HalfToFloat(view.ScaleBits(g, o)) * (static_cast<double>(view.Code(i, o)) - view.Zero(g, o));
            ref += x[t * c.in + i] * w;
            magnitude += std::fabs(x[t * c.in + i] * w);
          }
          ASSERT_NEAR(y[t * c.out + o], ref, 1e-12 * magnitude + 1e-300) << "token " << t << " output " << o;
        }
      }
    }
  }
}

}  // namespace
}  // namespace qshard::layout
