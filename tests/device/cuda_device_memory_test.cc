// The CUDA worker's device-memory rules (worker/device/cuda_device_memory.h), plain C++ built
// without CUDA: ModelConfig → the device layer's architecture, the device bytes a layer needs
// under each propagation (a small layer by hand, real models' shapes from docs/cuda.md's
// formulas), the attention statistics' slices and the refusal of a layer that cannot fit, and
// the job's plan at its start.
#include <algorithm>
#include <map>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/calibration/attention_stats.h"
#include "worker/device/cuda_device_memory.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;

TEST(CudaDeviceMemoryTest, ModelConfigBecomesTheDeviceLayer) {
  ModelConfig opt;  // OPT-350M-like: post-LN, biases
  opt.arch = Architecture::kOpt;
  opt.hidden_size = 96;
  opt.intermediate_size = 200;
  opt.num_heads = opt.num_kv_heads = 4;
  opt.head_dim = 24;
  opt.do_layer_norm_before = false;
  opt.enable_bias = true;
  opt.layer_norm_eps = 1e-5;
  auto a = LayerArchitectureOf(opt);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, gpu::LayerKind::kOpt);
  EXPECT_FALSE(a->norm_before);
  EXPECT_TRUE(a->attention_bias && a->mlp_bias);
  EXPECT_EQ(a->norm_eps, 1e-5);
  EXPECT_EQ(a->ffn, 200);

  ModelConfig llama;  // GQA 4:1, biases on the attention only
  llama.hidden_size = 64;
  llama.intermediate_size = 176;
  llama.num_heads = 8;
  llama.num_kv_heads = 2;
  llama.head_dim = 10;
  llama.rms_norm_eps = 1e-6;
  llama.rope_theta = 5e5;
  llama.attention_bias = true;
  llama.do_layer_norm_before = false;  // an OPT field: LLaMA ignores it
  a = LayerArchitectureOf(llama);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, gpu::LayerKind::kLlama);
  EXPECT_TRUE(a->norm_before);
  EXPECT_EQ(a->q_width(), 80);
  EXPECT_EQ(a->kv_width(), 20);
  EXPECT_TRUE(a->attention_bias);
  EXPECT_FALSE(a->mlp_bias);
  EXPECT_EQ(a->rope_theta, 5e5);

  llama.head_dim = 9;  // RoPE pairs channels
  EXPECT_EQ(LayerArchitectureOf(llama).status().code(), absl::StatusCode::kUnimplemented);
}

// Layers at real models' shapes, and their device bound written out from docs/cuda.md's
// formulas term by term (sharing only the forward scratch with the code under test).
ModelConfig LayerOf(Architecture arch, int64_t hidden, int64_t ffn, int64_t heads, int64_t kv_heads,
                    int64_t head_dim) {
  ModelConfig c;  // OPT with biases, LLaMA without (the defaults)
  c.arch = arch;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  return c;
}
const ModelConfig kOpt1p3b = LayerOf(Architecture::kOpt, 2048, 8192, 32, 32, 64);
const ModelConfig kOpt175b = LayerOf(Architecture::kOpt, 12288, 49152, 96, 96, 128);
const ModelConfig kLlama70b = LayerOf(Architecture::kLlama, 8192, 28672, 64, 8, 128);  // GQA 8:1

struct ExpectedBound {
  size_t rest = 0;       // weights 4·P, the forward scratch, one window's staging
  size_t solve = 0;      // the largest GPTQ solve, max(20·in², 12·in² + 16·in·out)
  size_t attention = 0;  // aespa's attention statistics
  size_t sums[4] = {};   // 12·width² per group: q/k/v, o, the MLP's input, down's

  size_t Sequential(bool aespa) const {
    size_t largest = 0;
    for (int g = 0; g < 4; ++g) largest = std::max(largest, sums[g] + (g == 0 && aespa ? attention : 0));
    return rest + std::max(largest, solve);
  }
  size_t Parallel(bool aespa) const {
    return rest + std::max(sums[0] + sums[1] + sums[2] + sums[3] + (aespa ? attention : 0), solve);
  }
};

ExpectedBound ExpectedOf(const ModelConfig& c, size_t tokens) {
  const size_t d = c.hidden_size, f = c.intermediate_size, q = c.num_heads * c.head_dim,
               kv = c.num_kv_heads * c.head_dim, hd = c.head_dim, kv_heads = c.num_kv_heads;
  const auto solve = [](size_t in, size_t out) { return std::max(20 * in * in, 12 * in * in + 16 * in * out); };
  ExpectedBound e;
  size_t parameters = 0;
  if (c.arch == Architecture::kOpt) {  // q, k, v, out_proj, fc1, fc2 with biases; two LayerNorms
    parameters = 4 * d * d + 4 * d + d * f + f + f * d + d + 2 * 2 * d;
    e.solve = std::max({solve(d, d), solve(d, f), solve(f, d)});
  } else {  // q, k, v, o, gate, up, down without biases; two RMSNorms
    parameters = d * q + 2 * d * kv + q * d + 3 * d * f + 2 * d;
    e.solve = std::max({solve(d, q), solve(d, kv), solve(q, d), solve(d, f), solve(f, d)});
  }
  const auto arch = LayerArchitectureOf(c);
  EXPECT_TRUE(arch.ok()) << arch.status();
  e.rest = 4 * parameters + gpu::LayerForwardScratchBytes(*arch, tokens) + 4 * tokens * d;
  // Per key/value head a hidden² float64 sum (and maxima) and two head_dim² ones for q and k; one
  // product scratch of each size; one head's probabilities, A_h X and a q/k slice.
  e.attention = kv_heads * (8 * d * d + 4 * d) + 2 * kv_heads * (8 * hd * hd + 4 * hd) + 4 * (d * d + hd * hd) +
                4 * tokens * tokens + 4 * tokens * d + 4 * tokens * hd;
  const size_t widths[4] = {d, q, d, f};
  for (int g = 0; g < 4; ++g) e.sums[g] = 12 * widths[g] * widths[g];
  return e;
}

constexpr int64_t kTokens = 2048;
constexpr ForwardStatistics kSequential{.all_groups = false, .attention = false};
constexpr ForwardStatistics kParallel{.all_groups = true, .attention = false};
constexpr ForwardStatistics kSequentialAespa{.all_groups = false, .attention = true};
constexpr ForwardStatistics kParallelAespa{.all_groups = true, .attention = true};

void ExpectBoundsPerMode(const ModelConfig& c, const ExpectedBound& e) {
  EXPECT_EQ(AttentionStatsDeviceBytes(c, kTokens), e.attention);
  EXPECT_EQ(LayerDeviceBytes(c, kTokens, kSequential), e.Sequential(false));
  EXPECT_EQ(LayerDeviceBytes(c, kTokens, kParallel), e.Parallel(false));
  EXPECT_EQ(LayerDeviceBytes(c, kTokens, kSequentialAespa), e.Sequential(true));
  EXPECT_EQ(LayerDeviceBytes(c, kTokens, kParallelAespa), e.Parallel(true));
}

TEST(CudaDeviceMemoryTest, TheLayerBoundCountsTheStatisticsThePropagationKeepsAtOnce) {
  // OPT-1.3B: fc2's solve (20·8192², 1.34 GB) outweighs every group's sums at once (1.0 GB), so
  // without aespa both modes give the same bound; aespa's 1.13 GB of attention statistics beside
  // group 0's sums stay under it (sequential), beside all four's do not (parallel).
  const ExpectedBound small = ExpectedOf(kOpt1p3b, kTokens);
  ExpectBoundsPerMode(kOpt1p3b, small);
  EXPECT_EQ(LayerDeviceBytes(kOpt1p3b, kTokens, kSequential), small.rest + small.solve);
  EXPECT_EQ(LayerDeviceBytes(kOpt1p3b, kTokens, kParallel), small.rest + small.solve);
  EXPECT_EQ(LayerDeviceBytes(kOpt1p3b, kTokens, kSequentialAespa), small.rest + small.solve);
  EXPECT_GT(LayerDeviceBytes(kOpt1p3b, kTokens, kParallelAespa), small.rest + small.solve);

  // OPT-175B: the attention statistics (96 × 12288² float64, 116.7 GB) decide aespa's bound in
  // both modes; sequential adds group 0's 1.8 GB to them, parallel all four groups' 34.4 GB.
  const ExpectedBound large = ExpectedOf(kOpt175b, kTokens);
  ExpectBoundsPerMode(kOpt175b, large);
  EXPECT_NEAR(large.attention / 1e9, 116.72, 0.01);
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa), large.rest + large.sums[0] + large.attention);
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kParallelAespa),
            LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa) + large.sums[1] + large.sums[2] + large.sums[3]);

  // LLaMA-2-70B (GQA 8:1): 8 key/value heads' statistics (4.65 GB) and group 0's sums stay under
  // down's solve (16.4 GB) and its own sums under sequential propagation; all four groups' sums
  // with them pass it under parallel.
  const ExpectedBound gqa = ExpectedOf(kLlama70b, kTokens);
  ExpectBoundsPerMode(kLlama70b, gqa);
  EXPECT_EQ(LayerDeviceBytes(kLlama70b, kTokens, kSequentialAespa), gqa.rest + gqa.solve);
  EXPECT_GT(LayerDeviceBytes(kLlama70b, kTokens, kParallelAespa), gqa.rest + gqa.solve);
}

TEST(CudaDeviceMemoryTest, AespaAtOpt175bTakesItsAttentionStatisticsInSlicesWhereTheyDoNotFitWhole) {
  const ExpectedBound e = ExpectedOf(kOpt175b, kTokens);
  const auto gb = [](size_t bytes) { return absl::StrFormat("%.2f GB", bytes / 1e9); };
  // The cards' nominal sizes, and the free memory the device tool reports on them (78 and 139 GiB).
  const size_t h200[] = {141'000'000'000, size_t{139} << 30}, h100[] = {80'000'000'000, size_t{78} << 30};

  // Sequential propagation: all 96 heads' values at once on a 141 GB card (127.0 GB).
  for (const size_t free : h200)
    EXPECT_EQ(ValueHeadsPerPass(kOpt175b, kTokens, kSequentialAespa, 0, free).value_or(-1), 96) << gb(free);
  // An 80 GB card holds 56 heads' beside the rest (59 with 78 GiB free): two slices, so the forward
  // pass leaves room for 48 heads' at a time, one window's copy for the later slices included.
  const size_t window = 4 * kTokens * (12288 + 96 * 128 + 96 * 128);  // x, q and k
  EXPECT_EQ(AttentionWindowBytes(kOpt175b, kTokens), window);         // what `qshard plan` counts per kept window
  EXPECT_NEAR(window / 1e6, 302.0, 0.1);
  const size_t per_head = 8 * 12288 * 12288 + 4 * 12288;
  for (const size_t free : h100) {
    const absl::StatusOr<int64_t> heads = ValueHeadsPerPass(kOpt175b, kTokens, kSequentialAespa, 0, free);
    ASSERT_TRUE(heads.ok()) << heads.status();
    EXPECT_EQ(*heads, 48) << gb(free);
    EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa, 48),
              e.rest + e.sums[0] + e.attention - 48 * per_head + window);
    EXPECT_LE(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa, 56), free);
  }
  EXPECT_GT(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa, 57), h100[0]);
  // Parallel propagation (all four groups' sums at once, 159.6 GB whole) is sliced on both: two
  // slices of 48 on 141 GB (80 fit), four of 24 on 80 GB (29 fit).
  EXPECT_EQ(ValueHeadsPerPass(kOpt175b, kTokens, kParallelAespa, 0, h200[0]).value_or(-1), 48);
  EXPECT_EQ(ValueHeadsPerPass(kOpt175b, kTokens, kParallelAespa, 0, h100[0]).value_or(-1), 24);

  // Refused only when one head's beside the rest does not fit. The bound with up to 37 heads is the
  // largest solve's (fc2: 48.3 GB) and the rest's: three slices of 32 there.
  const size_t one_head = LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa, 1);
  EXPECT_EQ(one_head, e.rest + e.solve);
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa, 37), one_head);
  EXPECT_EQ(ValueHeadsPerPass(kOpt175b, kTokens, kSequentialAespa, 0, one_head).value_or(-1), 32);
  const absl::StatusOr<int64_t> refused = ValueHeadsPerPass(kOpt175b, kTokens, kSequentialAespa, 1, one_head - 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              HasSubstr(absl::StrCat("aespa on cuda:1: a layer needs ", gb(one_head),
                                     " of device memory under sequential propagation")));
  EXPECT_THAT(refused.status().message(),
              HasSubstr(absl::StrCat("with one key/value head's attention statistics at a time (a 12288 × 12288 "
                                     "float64 sum per head; all 96 heads' at once would take ",
                                     gb(e.attention), ")")));
  EXPECT_THAT(refused.status().message(), HasSubstr(absl::StrCat(gb(one_head - 1), " are free: use --device cpu")));

  // Without attention statistics nothing is refused here (shards spill; a solve that cannot fit
  // fails when it allocates).
  EXPECT_EQ(ValueHeadsPerPass(kOpt175b, kTokens, kParallel, 0, 1'000'000'000).value_or(-1), 96);
}


// An OPT layer small enough to count by hand: hidden 8, ffn 16, 2 heads of 4, windows of 4 tokens.
TEST(CudaDeviceMemoryTest, ASmallLayerCountedByHand) {
  const ModelConfig c = LayerOf(Architecture::kOpt, 8, 16, 2, 2, 4);
  const auto arch = LayerArchitectureOf(c);
  ASSERT_TRUE(arch.ok()) << arch.status();
  // Group inputs 4·(8 + 8 + 8 + 16), q 4·8, k and v 4·8 each, scores 2 heads · 4 · 4: 288 floats.
  EXPECT_EQ(gpu::LayerForwardScratchBytes(*arch, 4), 1152u);
  // Weights: q, k, v, out_proj 4·(64 + 8), fc1 128 + 16, fc2 128 + 8, two LayerNorms 2·16: 600
  // floats, 2400 bytes; with the scratch and one window's staging 4·4·8 = 128: 3680 bytes.
  // Largest solve: fc2's max(20·16², 12·16² + 16·16·8) = 5120; sums 12·width²: 768, 768, 768, 3072.
  EXPECT_EQ(LayerDeviceBytes(c, 4, kSequential), 3680u + 5120);
  EXPECT_EQ(LayerDeviceBytes(c, 4, kParallel), 3680u + 768 * 3 + 3072);
  // Attention statistics: values 2·(8·64 + 4·8) = 1088, queries and keys 2·2·(8·16 + 4·4) = 576,
  // products 4·(64 + 16) = 320, probabilities 4·16 = 64, A_h X 4·4·8 = 128, a q/k slice 4·4·4 = 64.
  EXPECT_EQ(gpu::DeviceAttentionStatsBytes(AttentionStatsDimsOf(c), 4, 2), 2240u);
  EXPECT_EQ(AttentionStatsDeviceBytes(c, 4), 2240u);
  // One head at a time: 544 less, and a kept window's x, q and k 4·4·(8 + 8 + 8) = 384 more.
  EXPECT_EQ(AttentionWindowBytes(c, 4), 384u);
  EXPECT_EQ(AttentionStatsDeviceBytes(c, 4, 1), 2240u - 544 + 384);
  // Sequential: group 0's 768 + 2240 stay under fc2's solve; parallel: beside all four groups'.
  EXPECT_EQ(LayerDeviceBytes(c, 4, kSequentialAespa), 3680u + 5120);
  EXPECT_EQ(LayerDeviceBytes(c, 4, kParallelAespa), 3680u + 5376 + 2240);
  EXPECT_EQ(LayerDeviceBytes(c, 4, kParallelAespa, 1), 3680u + 5376 + 2080);
  EXPECT_EQ(ValueHeadsPerPass(c, 4, kParallelAespa, 0, 11296).value_or(-1), 2);
  EXPECT_EQ(ValueHeadsPerPass(c, 4, kParallelAespa, 0, 11295).value_or(-1), 1);
  EXPECT_EQ(ValueHeadsPerPass(c, 4, kParallelAespa, 0, 11135).status().code(), absl::StatusCode::kResourceExhausted);

  // LLaMA adds the up projection's scratch and RoPE's tables: hidden 8, ffn 16, 4 heads of 2 over
  // 2 key/value heads: groups 160, q 32, k and v 16 each, up 64, scores 4·4·4, cos and sin 4 each.
  const auto llama = LayerArchitectureOf(LayerOf(Architecture::kLlama, 8, 16, 4, 2, 2));
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ(gpu::LayerForwardScratchBytes(*llama, 4), 4u * (160 + 32 + 32 + 64 + 64 + 8));
}

// docs/cuda.md's figures at OPT-175B with windows of 2048: aespa's layer 126.98 GB whole under
// sequential propagation; two slices of 48 heads on 80 GB; refused below 56.77 GB, which is also
// GPTQ's bound there (fc2's solve and the rest), under both propagations.
TEST(CudaDeviceMemoryTest, Opt175bAsTheDocsQuoteIt) {
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa), 126'984'929'280u);
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kSequential), 56'774'737'920u);
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kParallel), 56'774'737'920u);
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa, 1), 56'774'737'920u);
  EXPECT_EQ(LayerDeviceBytes(kOpt175b, kTokens, kSequentialAespa, 48), 69'302'501'376u);

  absl::StatusOr<DeviceMemoryPlan> plan = PlanDeviceMemory(kOpt175b, kTokens, kSequentialAespa, 0, 80'000'000'000);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->free_bytes, 80'000'000'000u);
  EXPECT_EQ(plan->layer_bytes, 69'302'501'376u);
  EXPECT_EQ(plan->kv_heads, 96);
  EXPECT_EQ(plan->value_heads, 48);
  EXPECT_EQ(plan->shards_on_device + plan->shards_in_host, 0);  // none held yet

  plan = PlanDeviceMemory(kOpt175b, kTokens, kSequential, 0, 50'000'000'000);  // GPTQ: never refused here
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->layer_bytes, 56'774'737'920u);
  EXPECT_EQ(plan->kv_heads, 0);

  plan = PlanDeviceMemory(kOpt175b, kTokens, kSequentialAespa, 0, 56'774'737'919);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(plan.status().message(),
              HasSubstr("aespa on cuda:0: a layer needs 56.77 GB of device memory under sequential propagation"));
  EXPECT_THAT(plan.status().message(), HasSubstr("all 96 heads' at once would take 116.72 GB), and 56.77 GB are free"));
}

TEST(CudaDeviceMemoryTest, AespaRoundsEachLinearOfItsShapeInTheMemoryLeftBesideTheLayer) {
  // What stays through the solves is the bound less its statistics or largest solve.
  EXPECT_EQ(LayerResidentBytes(kOpt175b, kTokens), ExpectedOf(kOpt175b, kTokens).rest);
  EXPECT_EQ(LayerResidentBytes(kLlama70b, kTokens), ExpectedOf(kLlama70b, kTokens).rest);
  // LLaMA-2-70B (GQA 8:1): q_proj a weighting per query head, k_proj per key/value head, v_proj a
  // Hessian per key/value head, the rest one Hessian.
  std::map<std::string, gpu::AdaRoundDeviceProblem> shapes;
  for (const LinearSpec& l : DecoderLayerSpec(kLlama70b).linears) shapes[l.name] = AespaRoundingShape(kLlama70b, l, 4);
  const auto units = [&](const char* name) {
    const gpu::AdaRoundDeviceProblem& p = shapes.at(name);
    return std::make_tuple(p.rows, p.cols, p.hessians.size(), p.weightings.size());
  };
  EXPECT_EQ(units("self_attn.q_proj"), std::make_tuple(8192, 8192, 1u, 64u));
  EXPECT_EQ(units("self_attn.k_proj"), std::make_tuple(1024, 8192, 1u, 8u));
  EXPECT_EQ(units("self_attn.v_proj"), std::make_tuple(1024, 8192, 8u, 0u));
  EXPECT_EQ(units("mlp.down_proj"), std::make_tuple(8192, 28672, 1u, 0u));
  EXPECT_EQ(shapes.at("mlp.down_proj").max_code, 15);
  EXPECT_NEAR(gpu::AdaRoundDeviceBytes(8192, 28672, 1, 0) / 1e9, 14.8, 0.1);  // docs/cuda.md's down_proj
  // OPT-175B's v_proj, 93.31 GB whole, and the learner's refusal where not one head's 0.97 GB is free.
  const LinearSpec v_proj = DecoderLayerSpec(kOpt175b).linears[2];
  ASSERT_EQ(v_proj.name, "self_attn.v_proj");
  const gpu::AdaRoundDeviceProblem v = AespaRoundingShape(kOpt175b, v_proj, 4);
  EXPECT_NEAR(gpu::AdaRoundSliceBytes(v, {0, 96}) / 1e9, 93.31, 0.01);
  EXPECT_EQ(AdaRoundRefusal(v, 1, 900'000'000),
            "AdaRound needs 0.97 GB on cuda:1 for one Hessian block (128 of a 12288 × 12288 weight's rows, 96 Hessian "
            "block(s) of 12288 × 12288, 0 output weighting(s)) and 0.90 GB are free: use --device cpu, or a device "
            "with more memory");
}

}  // namespace
}  // namespace qshard
