// The GPTQ checkpoint written by the job reads back, through GptqTensorSource, as exactly
// the weights the solver produced; everything else is copied unchanged.
#include <filesystem>
#include <fstream>

#include "engine/job_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/scoped_temp_dir.h"
#include "worker/export/gptq_tensor_source.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

constexpr char kModel[] = "../shared/data/tinystories-656k";

JobSpec RtnJob(int bits, int group_size, const std::string& out) {
  JobSpec spec;
  spec.model_dir = kModel;
  spec.out_dir = out;
  spec.method.method = "rtn";
  spec.method.spec.bits = bits;
  spec.method.spec.group_size = group_size;
  return spec;
}

TEST(GptqCheckpointTest, RtnCheckpointReadsBackAsTheSolversWeights) {
  testing::ScopedTempDir dir;
  const JobSpec spec = RtnJob(3, 64, dir.Child("rtn"));
  auto report = RunEmbeddedJob(spec, JobEvents());
  ASSERT_TRUE(report.ok()) << report.status() << " (needs " << kModel << ")";

  auto source = OpenModelSource(spec.out_dir);
  ASSERT_TRUE(source.ok()) << source.status();
  auto original = Checkpoint::Open(kModel);
  ASSERT_TRUE(original.ok());
  auto solver = MakeSolver("rtn", spec.method.spec);
  ASSERT_TRUE(solver.ok());
  for (const std::string name : {"model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight"}) {
    auto weight = (*original)->ReadFloat(name);
    ASSERT_TRUE(weight.ok());
    LayerProblem problem;
    problem.name = name;
    problem.weight = &*weight;
    auto expected = (*solver)->Solve(problem);
    ASSERT_TRUE(expected.ok()) << expected.status();
    auto stored = (*source)->Read(name);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->shape(), weight->shape());
    EXPECT_EQ(stored->values(), expected->dequantized.values()) << name;
  }
  auto head = (*source)->Read("lm_head.weight");
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->values(), (*original)->ReadFloat("lm_head.weight")->values());
}

TEST(GptqCheckpointTest, ConfigCarriesTheQuantizationBlock) {
  testing::ScopedTempDir dir;
  JobSpec spec = RtnJob(4, 32, dir.Child("q"));
  spec.method.spec.sym = true;
  ASSERT_TRUE(RunEmbeddedJob(spec, JobEvents()).ok());
  auto checkpoint = Checkpoint::Open(spec.out_dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::ifstream in(spec.out_dir + "/config.json");
  const nlohmann::json config = nlohmann::json::parse(in);
  const nlohmann::json& q = config.at("quantization_config");
  EXPECT_EQ(q.at("quant_method"), "gptq");
  EXPECT_EQ(q.at("bits"), 4);
  EXPECT_EQ(q.at("group_size"), 32);
  EXPECT_EQ(q.at("sym"), true);
  EXPECT_EQ(q.at("desc_act"), false);
  auto qweight = (*checkpoint)->Info("model.layers.0.self_attn.q_proj.qweight");
  ASSERT_TRUE(qweight.ok());
  EXPECT_EQ(qweight->dtype, DType::kI32);
  EXPECT_EQ(qweight->shape, (std::vector<int64_t>{128 * 4 / 32, 128}));
  auto scales = (*checkpoint)->Info("model.layers.0.self_attn.q_proj.scales");
  ASSERT_TRUE(scales.ok());
  EXPECT_EQ(scales->dtype, DType::kF16);
  EXPECT_EQ(scales->shape, (std::vector<int64_t>{4, 128}));
}

}  // namespace
}  // namespace qshard
