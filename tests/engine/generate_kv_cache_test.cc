// Incremental decoding with the key/value cache against the full recompute of the same prefix:
// the logits of every step, and the greedy ids, on the real TinyStories-656K (LLaMA, GQA), a
// 2-layer synthetic OPT (learned positions, biases) and an RTN W4 checkpoint of TinyStories
// whose linears run through the GPTQ integer kernels.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/status.h"
#include "core/synthetic_model.h"
#include "engine/job_runner.h"
#include "engine/model_loading.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"
#include "worker/eval/generate.h"
#include "worker/eval/next_token_stats.h"
#include "worker/model/kv_cache.h"
#include "worker/model/resident_model.h"

namespace qshard {
namespace {

constexpr int kSteps = 32;

// Logits of the last row of `hidden`.
Tensor LastLogits(const ResidentModel& model, const Tensor& hidden) {
  const int64_t last = hidden.rows() - 1;
  return model.decoder().Logits(Tensor({1, hidden.cols()}, std::vector<float>(hidden.row(last), hidden.row(last + 1))));
}

// A prompt of 7 ids (an awkward length) drawn from the vocabulary.
std::vector<int32_t> RandomPrompt(const ResidentModel& model, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(model.config().vocab_size) - 1);
  std::vector<int32_t> prompt(7);
  for (int32_t& t : prompt) t = id(rng);
  return prompt;
}

// Runs the prompt into a cache, then kSteps tokens one at a time, each the full path's greedy
// choice, and compares every step's logits with those of the whole prefix recomputed.
// Tolerance: |cached - full| <= 1e-4 * max(1, max |full|) per step. The two paths compute the
// same float32 products, but the decode attention sums keys in another order (one pass over
// the cache, scale after the dot product) than the blocked online-softmax window kernel; that
// reorders roundings of ~1e-7 relative over a few hundred terms and a few layers, 1e-6..1e-5
// of the logits' scale. A wrong position, rotation or cached row moves logits by 1e-2 or more.
void ExpectCachedStepsMatchRecompute(const ResidentModel& model, std::vector<int32_t> context) {
  KvCache cache(model.config());
  absl::StatusOr<Tensor> hidden = model.HiddenCached(context, cache);
  ASSERT_TRUE(hidden.ok()) << hidden.status();
  double worst = 0.0;
  for (int step = 0; step < kSteps; ++step) {
    const Tensor cached = LastLogits(model, *hidden);
    const int64_t seq = static_cast<int64_t>(context.size());
    absl::StatusOr<Tensor> full_hidden = model.Hidden(context, 1, seq);
    ASSERT_TRUE(full_hidden.ok()) << full_hidden.status();
    const Tensor full = LastLogits(model, *full_hidden);
    ASSERT_EQ(cached.shape(), full.shape());
    float scale = 1.0f;
    for (float v : full.values()) scale = std::max(scale, std::abs(v));
    float error = 0.0f;
    for (int64_t i = 0; i < full.size(); ++i) error = std::max(error, std::abs(cached.data()[i] - full.data()[i]));
    ASSERT_LE(error, 1e-4f * scale) << "step " << step << " at " << seq << " tokens";
    worst = std::max(worst, static_cast<double>(error / scale));
    const int32_t next = static_cast<int32_t>(ArgMax(full.data(), full.cols()));
    ASSERT_EQ(ArgMax(cached.data(), cached.cols()), next) << "step " << step;
    context.push_back(next);
    hidden = model.HiddenCached(std::vector<int32_t>{next}, cache);
    ASSERT_TRUE(hidden.ok()) << hidden.status();
  }
  std::printf("%d cached steps: worst |cached - full| / max(1, max |logit|) = %.3g\n", kSteps, worst);
}

void ExpectSameGreedyIds(const ResidentModel& model, const std::vector<int32_t>& prompt) {
  absl::StatusOr<std::vector<int32_t>> cached = Generate(model, prompt, kSteps, /*eos=*/-1);
  absl::StatusOr<std::vector<int32_t>> full = Generate(model, prompt, kSteps, /*eos=*/-1, /*kv_cache=*/false);
  ASSERT_TRUE(cached.ok() && full.ok()) << cached.status() << full.status();
  EXPECT_EQ(cached->size(), static_cast<size_t>(kSteps));
  EXPECT_EQ(*cached, *full);
}

TEST(GenerateKvCacheTest, TinyStoriesStepsMatchFullRecompute) {
  auto model = ResidentModel::Open(tiny_jobs::kModel);
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->SetThreads(2);
  const std::vector<int32_t> prompt = RandomPrompt(**model, 1);
  ExpectCachedStepsMatchRecompute(**model, prompt);
  ExpectSameGreedyIds(**model, prompt);
}

// A synthetic OPT-125M-shaped model with `layers` layers written under `dir` and loaded.
absl::StatusOr<std::unique_ptr<ResidentModel>> SyntheticOpt(const testing::ScopedTempDir& dir, int layers) {
  SyntheticSpec spec;
  spec.preset = "opt-125m";
  spec.num_layers = layers;
  spec.out_dir = dir.Child("opt");
  spec.dtype = DType::kF32;
  QSHARD_RETURN_IF_ERROR(WriteSyntheticModel(spec));
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<ResidentModel> model, ResidentModel::Open(spec.out_dir));
  model->SetThreads(2);
  return model;
}

TEST(GenerateKvCacheTest, SyntheticOptStepsMatchFullRecompute) {
  testing::ScopedTempDir dir;
  auto model = SyntheticOpt(dir, 2);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> prompt = RandomPrompt(**model, 2);
  ExpectCachedStepsMatchRecompute(**model, prompt);
  ExpectSameGreedyIds(**model, prompt);
}

TEST(GenerateKvCacheTest, QuantizedCheckpointDecodesThroughKernelsWithTheCache) {
  testing::ScopedTempDir dir;
  const std::string out = dir.Child("rtn");
  auto report = RunEmbeddedJob(tiny_jobs::Job("rtn", 4, out, /*nsamples=*/4, /*seqlen=*/64), JobEvents());
  ASSERT_TRUE(report.ok()) << report.status();
  auto loaded = LoadModelForInference(out, 2);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->quantized);
  ASSERT_NE(loaded->model->layer(0).linear("self_attn.q_proj").kernel, nullptr);  // the integer kernels run
  const std::vector<int32_t> prompt = RandomPrompt(*loaded->model, 3);
  ExpectCachedStepsMatchRecompute(*loaded->model, prompt);
  ExpectSameGreedyIds(*loaded->model, prompt);
}

TEST(GenerateKvCacheTest, OptCacheStopsAtTheLearnedPositions) {
  testing::ScopedTempDir dir;
  auto model = SyntheticOpt(dir, 1);
  ASSERT_TRUE(model.ok()) << model.status();
  const int64_t limit = (*model)->config().max_positions;
  KvCache cache((*model)->config());
  ASSERT_TRUE((*model)->HiddenCached(std::vector<int32_t>(limit - 1, 5), cache).ok());
  EXPECT_TRUE((*model)->HiddenCached(std::vector<int32_t>{5}, cache).ok());
  EXPECT_FALSE((*model)->HiddenCached(std::vector<int32_t>{5}, cache).ok());
}

}  // namespace
}  // namespace qshard
