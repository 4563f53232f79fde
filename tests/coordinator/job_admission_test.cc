// Admission: a job's plan against the workers' declared memory budgets, and the plan's
// figures themselves on a model whose shapes are known (TinyStories-656K's config.json).
#include "coordinator/job_admission.h"

#include "engine/job_plan.h"
#include "gtest/gtest.h"
#include "tests/engine/tiny_jobs.h"
#include "worker/calibration/attention_stats.h"

namespace qshard {
namespace {

JobSpec Job() { return tiny_jobs::Job("gptq", 4, "/tmp/unused", /*nsamples=*/16, /*seqlen=*/256); }

v1::WorkerHello WorkerWithBudget(uint64_t bytes) {
  v1::WorkerHello hello;
  hello.set_memory_budget_bytes(bytes);
  return hello;
}

TEST(JobAdmissionTest, ASmallBudgetIsRefusedNamingTheLargestTerms) {
  const absl::Status status = AdmitJob(Job(), 2, {WorkerWithBudget(uint64_t{64} << 30), WorkerWithBudget(1'000'000)});
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_NE(status.message().find("on each of its 2 workers"), std::string::npos) << status;
  EXPECT_NE(status.message().find("the smallest has 1.0 MB (--memory-budget)"), std::string::npos) << status;
  EXPECT_NE(status.message().find("forward batch"), std::string::npos) << status;  // the largest term here
}

TEST(JobAdmissionTest, EnoughOrUndeclaredBudgetsAreAccepted) {
  EXPECT_TRUE(AdmitJob(Job(), 2, {WorkerWithBudget(uint64_t{8} << 30)}).ok());
  EXPECT_TRUE(AdmitJob(Job(), 2, {WorkerWithBudget(0), v1::WorkerHello()}).ok());
  EXPECT_TRUE(AdmitJob(Job(), 0, {}).ok());  // embedded, against this machine
}

TEST(JobAdmissionTest, AnUnreadableModelIsNamed) {
  JobSpec spec = Job();
  spec.model_dir = "/nonexistent/model";
  const absl::Status status = AdmitJob(spec, 1, {});
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("model_path"), std::string::npos) << status;
}

// The terms by hand for TinyStories-656K (d = 128, f = 384, 8 heads, 4 KV heads, vocab 2048,
// tied embeddings), 16 windows of 256 in 4 shards.
TEST(JobPlanTest, TermsFollowTheFormulaOfTheArchitectureDoc) {
  auto config = LoadModelConfig(tiny_jobs::kModel);
  ASSERT_TRUE(config.ok()) << config.status();
  auto two = PlanJob(Job(), *config, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  const auto term = [](const MemoryPlan& memory, const std::string& name) {
    for (const MemoryTerm& t : memory.terms)
      if (t.name == name) return t.bytes;
    ADD_FAILURE() << "no term " << name;
    return uint64_t{0};
  };
  // 8 windows per worker, kept twice (restartable); the MLP hidden state is the widest activation.
  EXPECT_EQ(term(two->worker, "calibration hidden states"), 4u * 8 * 256 * 128 * 2);
  EXPECT_EQ(term(two->worker, "cached stage activation"), 4u * 8 * 256 * 384);
  EXPECT_EQ(term(two->worker, "embeddings (fp32)"), 4u * 2048 * 128);
  // q,k,v,o (128² + 2·64·128 KV + 128²) + gate, up, down (3·128·384) + two norms.
  const uint64_t layer = 2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 384 + 2 * 128;
  EXPECT_EQ(term(two->worker, "layer weights (fp32)"), 4 * layer);
  // Sequential: one group's sums at a time, the widest (down_proj's 384); 2 shards held → 3 alive.
  EXPECT_EQ(term(two->worker, "partial statistics"), 8u * 384 * 384 * 3);
  // Each worker holds an aligned pair of shards: one node per group. The group's owner pulls the
  // other worker's node (its own stays in memory), and each other worker solving a part of the
  // group pulls the reduced sum from it. GPTQ's linears are independent: q,k,v on 2 workers, o
  // on 1, gate/up on 2, down on 1. Nothing goes through the coordinator.
  EXPECT_EQ(two->statistics_bytes, 8u * 128 * 128 * ((1 + 1) + (1 + 0) + (1 + 1)) + 8u * 384 * 384 * (1 + 0));
  EXPECT_EQ(term(two->coordinator, "reduced statistics"), 0u);
  EXPECT_EQ(term(two->worker, "reduced statistics (owner)"), 8u * 384 * 384);
  auto one = PlanJob(Job(), *config, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(term(one->worker, "calibration hidden states"), 4u * 16 * 256 * 128);  // not restartable
  EXPECT_EQ(term(one->coordinator, "a kept layer (replay, restore)"), 4 * (layer - 2 * 128));  // codes, no norms
  EXPECT_EQ(term(one->coordinator, "quantized layers held to the end"), 0u);
  JobSpec flattened = Job();
  flattened.method.method = "flattenquant";
  flattened.method.spec.bits = 8;
  auto held = PlanJob(flattened, *config, 1);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(term(held->coordinator, "quantized layers held to the end"), 2 * 4 * (layer - 2 * 128));  // 2 layers
}

// aespa on CUDA workers whose attention statistics are taken in slices of heads: each worker keeps a
// shard's windows' x, q and k in host memory for the later slices (docs/cuda.md's OPT-175B
// figures: 302 MB a window of 2048 tokens, 38.7 GB for 128 windows); nothing when not sliced.
TEST(JobPlanTest, AespaSlicedOnADeviceKeepsTheLargestShardsWindowsInHostMemory) {
  auto tiny = LoadModelConfig(tiny_jobs::kModel);
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  ModelConfig opt175b = *tiny;  // OPT-175B's attention widths
  opt175b.hidden_size = 12288;
  opt175b.intermediate_size = 49152;
  opt175b.num_heads = opt175b.num_kv_heads = 96;
  opt175b.head_dim = 128;
  opt175b.max_positions = 2048;
  EXPECT_NEAR(AttentionWindowBytes(opt175b, 2048) / 1e6, 302.0, 0.1);
  JobSpec spec = tiny_jobs::Job("aespa", 4, "/tmp/unused", /*nsamples=*/128, /*seqlen=*/2048);
  spec.calibration.shards = 1;
  auto plan = PlanJob(spec, opt175b, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const uint64_t before = plan->worker.total();
  const size_t terms = plan->worker.terms.size();
  EXPECT_EQ(AddKeptAttentionWindows(*plan, spec, opt175b, 96), 0u);  // all heads at once: none kept
  EXPECT_EQ(plan->worker.terms.size(), terms);
  const uint64_t kept = AddKeptAttentionWindows(*plan, spec, opt175b, 48);
  EXPECT_EQ(kept, 128 * AttentionWindowBytes(opt175b, 2048));
  EXPECT_NEAR(kept / 1e9, 38.7, 0.05);
  EXPECT_EQ(plan->worker.total(), before + kept);
  EXPECT_EQ(plan->worker.terms.back().name, "kept attention windows");
  // 8 shards of 16 windows: one shard's at a time.
  spec.calibration.shards = 8;
  auto sharded = PlanJob(spec, opt175b, 2);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_EQ(AddKeptAttentionWindows(*sharded, spec, opt175b, 48), 16 * AttentionWindowBytes(opt175b, 2048));
}

// --batch-windows 0 (the default): as many windows as keep a batch's activations within
// 512 MiB, 1 to 64; a given count is kept as it is.
TEST(JobPlanTest, AutomaticBatchesFitTheirBudget) {
  auto config = LoadModelConfig(tiny_jobs::kModel);
  ASSERT_TRUE(config.ok()) << config.status();
  JobSpec spec = Job();
  ASSERT_EQ(spec.execution.batch_windows, 0);
  const uint64_t budget = uint64_t{512} << 20;
  // 3·128 + 2·384 floats per token: far more than 64 windows of 256 fit.
  EXPECT_EQ(ForwardBatchWindows(spec, *config, 256, false), 64);
  // aespa's probabilities add 8 heads · 512 per token.
  EXPECT_EQ(ForwardBatchWindows(spec, *config, 512, true), static_cast<int64_t>(budget / (4 * 512 * (1152 + 8 * 512))));
  ModelConfig huge = *config;  // OPT-175B's widths
  huge.hidden_size = 12288;
  huge.intermediate_size = 49152;
  huge.num_heads = 96;
  EXPECT_EQ(ForwardBatchWindows(spec, huge, 2048, false), 1);
  spec.execution.batch_windows = 5;
  EXPECT_EQ(ForwardBatchWindows(spec, huge, 2048, true), 5);

  auto plan = PlanJob(Job(), *config, 2);  // 8 windows per worker, all in one batch
  ASSERT_TRUE(plan.ok()) << plan.status();
  uint64_t forward = 0;
  for (const MemoryTerm& t : plan->worker.terms)
    if (t.name == "forward batch") forward = t.bytes;
  EXPECT_EQ(forward, 8u * 4 * 256 * (3 * 128 + 2 * 384));

  JobSpec negative = Job();
  negative.execution.batch_windows = -1;
  EXPECT_EQ(ValidateJobSpec(negative).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qshard
