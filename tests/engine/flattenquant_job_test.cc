// FlattenQuant end to end on the real TinyStories-656K model: the checkpoint records its split
// channels and activation scales (docs/flattenquant.md), loads through the W8A8 kernels and
// as float weights, and flattening (`auto`) gives a lower KL against the fp32 model than
// `off` at W8A8 per tensor on held-out windows.
#include <cstdio>
#include <fstream>

#include "core/checkpoint.h"
#include "engine/job_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"

namespace qshard {
namespace {

JobSpec Job(int bits, const std::string& threshold, const std::string& out) {
  JobSpec spec = tiny_jobs::Job("flattenquant", bits, out, /*nsamples=*/8, /*seqlen=*/256);
  spec.method.flatten_threshold = threshold;
  return spec;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

TEST(FlattenQuantJobTest, AutoBeatsOffAtW8A8AndTheCheckpointRecordsTheSplit) {
  testing::ScopedTempDir dir;
  for (const char* threshold : {"off", "auto"}) {
    auto report = RunEmbeddedJob(Job(8, threshold, dir.Child(threshold)), JobEvents());
    ASSERT_TRUE(report.ok()) << threshold << ": " << report.status();
    int64_t added = 0;
    for (const auto& m : (*report)["modules"]) {
      EXPECT_EQ(m["act_bits"], 8);
      added += m["added_inputs"].get<int64_t>();
    }
    EXPECT_EQ(added > 0, std::string(threshold) == "auto");
  }
  const nlohmann::json config = ReadJson(dir.Child("auto") + "/config.json");
  const nlohmann::json& q = config["quantization_config"];
  EXPECT_EQ(q["quant_method"], "qshard-flattenquant");
  const nlohmann::json& fc = q["modules"]["model.layers.0.mlp.down_proj"];
  EXPECT_EQ(fc["bits"], 8);
  EXPECT_GE(fc["in_features"].get<int64_t>(), 384);
  auto checkpoint = Checkpoint::Open(dir.Child("auto"));
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto channels = (*checkpoint)->Info("model.layers.0.mlp.down_proj.input_channel");
  ASSERT_TRUE(channels.ok()) << channels.status();
  EXPECT_EQ(channels->shape, std::vector<int64_t>{fc["in_features"].get<int64_t>()});
  EXPECT_TRUE((*checkpoint)->Info("model.layers.0.mlp.down_proj.act_scale").ok());

  const EvalResult off = tiny_jobs::EvaluateAgainstBase(dir.Child("off"), 4);
  const EvalResult flat = tiny_jobs::EvaluateAgainstBase(dir.Child("auto"), 4);
  std::printf("W8A8 per tensor, 8 windows of 256: KL off %.5f, auto %.5f\n", off.kl_divergence, flat.kl_divergence);
  EXPECT_LT(flat.kl_divergence, off.kl_divergence);

  // The float view (split columns folded back, float activations) loads and is closer still.
  auto dequantized = LoadModelForInference(dir.Child("auto"), 2, GptqLinearMode::kDequantize);
  ASSERT_TRUE(dequantized.ok()) << dequantized.status();
}

}  // namespace
}  // namespace qshard
