// `qshard plan --device-memory BYTES` through the built program, in every build (a build without
// CUDA too): for GPTQ, aespa and RTN on OPT-175B's config (`make-synthetic --config-only`, 128
// windows of 2048 in 8 shards of 1.61 GB of hidden states), what runs on CUDA workers, the
// busiest worker's device plan in the worker's own words (DescribeDeviceMemoryPlan), aespa's
// passes and kept windows, aespa's AdaRound in slices, a GPTQ layer beyond the free memory, and
// aespa's refusal.
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/child_process.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ChildProcess;
using testing::ScopedTempDir;

struct Exited {
  int code;
  std::string out, err;
};

class PlanDeviceMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(Run({"make-synthetic", "--preset", "opt-175b", "--config-only", "--out", dir_.Child("opt-175b")}).code,
              0);
    std::ofstream(dir_.Child("calib.txt")) << "never read: the plan needs config.json alone\n";
  }

  Exited Run(const std::vector<std::string>& args) {
    ChildProcess process(args, dir_.Child(absl::StrCat(args[0], runs_++)));
    const int code = process.Wait(std::chrono::seconds(60));
    return {code, process.Stdout(), process.Stderr()};
  }

  Exited Plan(const std::string& method, uint64_t device_memory, bool json = false) {
    std::vector<std::string> args = {"plan", "--model", dir_.Child("opt-175b"), "--out", dir_.Child("unused"),
                                     "--method", method, "--bits", "4", "--group-size", "128", "--calib-text",
                                     dir_.Child("calib.txt"), "--nsamples", "128", "--seqlen", "2048",
                                     "--device-memory", std::to_string(device_memory)};
    if (json) args.push_back("--json");
    return Run(args);
  }

  ScopedTempDir dir_;
  int runs_ = 0;
};

TEST_F(PlanDeviceMemoryTest, GptqSaysItsBoundAndWhereTheShardsLie) {
  // The layer's bound at OPT-175B is fc2's solve and the rest, 56.77 GB: beside it, 141 GB hold
  // every shard, 60 GB two of them, and below it every shard spills and the layer may not fit.
  Exited run = Plan("gptq", 141'000'000'000);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("on CUDA workers with 141.00 GB free: calibration (forward passes, statistics) on "
                                 "the device, solves on the device\n  the busiest worker's device plan: a layer's "
                                 "bound 56.77 GB of 141.00 GB free; hidden states on the device\n"));
  EXPECT_THAT(run.out, Not(HasSubstr("exceeds")));
  run = Plan("gptq", 60'000'000'000);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("device plan: a layer's bound 56.77 GB of 60.00 GB free; hidden states of 2 of 8 "
                                 "shards on the device, the rest in host memory\n"));

  run = Plan("gptq", 50'000'000'000);
  ASSERT_EQ(run.code, 0) << run.err;  // the worker does not refuse it either
  EXPECT_THAT(run.out, HasSubstr("a layer's bound 56.77 GB of 50.00 GB free; hidden states in host memory (copied "
                                 "up window by window)\n  a layer's bound exceeds the free memory: the worker "
                                 "starts the job (nothing refuses it up front)"));
  run = Plan("gptq", 50'000'000'000, /*json=*/true);
  ASSERT_EQ(run.code, 0) << run.err;
  const nlohmann::json device = nlohmann::json::parse(run.out)["device"];
  EXPECT_EQ(device["free_bytes"], 50'000'000'000u);
  EXPECT_EQ(device["roles"], nlohmann::json({{"calibration", "cuda"}, {"solves", "cuda"}}));
  EXPECT_EQ(device["device_plan"]["layer_bytes"], 56'774'737'920u);
  EXPECT_EQ(device["device_plan"]["shards_on_device"], 0);
  EXPECT_EQ(device["device_plan"]["shards_in_host"], 8);
  EXPECT_FALSE(device.contains("kept_attention_window_bytes"));
  EXPECT_EQ(device["layer_fits"], false);
  EXPECT_THAT(device["warning"].get<std::string>(), HasSubstr("may fail mid-job with RESOURCE_EXHAUSTED"));
}

TEST_F(PlanDeviceMemoryTest, AespaSaysItsPassesOrTheWorkersRefusal) {
  // 141 GB: all 96 heads' attention statistics in one pass (the bound 126.98 GB), and the 12.88 GB
  // of hidden states beside them.
  Exited run = Plan("aespa", 141'000'000'000);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("solves on the CPU (aespa's ζ search has no device code) but GPTQ's and AdaRound "
                                 "on the device\n  the busiest worker's device plan: attention statistics of all 96 "
                                 "key/value heads in one pass; a layer's bound 126.98 GB of 141.00 GB free; hidden "
                                 "states on the device\n"));
  EXPECT_THAT(run.out, Not(HasSubstr("AdaRound of")));  // every linear whole, v_proj's 93.31 GB too
  // 80 GB: two passes of 48 heads, a shard's windows kept in host memory for the second.
  run = Plan("aespa", 80'000'000'000);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("device plan: attention statistics in 2 passes of 48 of 96 key/value heads (the "
                                 "later passes replay windows kept in host memory); a layer's bound 69.30 GB of 80.00 "
                                 "GB free; hidden states of 6 of 8 shards on the device, the rest in host memory\n"
                                 "  each worker keeps a shard's windows' x, q and k in host memory for the later "
                                 "passes (4.83 GB, counted above)\n"));
  // v_proj's AdaRound (96 per-head Hessians, 93.31 GB whole) in the 61.88 GB left at the solves:
  // 80 GB less 6 shards' 9.66 GB of hidden states and the layer's 8.46 GB of weights and scratch.
  EXPECT_THAT(run.out, HasSubstr("  aespa's AdaRound with 61.88 GB free at its solves (less the held hidden states "
                                 "and the layer's weights):\n    AdaRound of self_attn.v_proj in 2 slices of 48 of 96 "
                                 "heads (46.66 GB each, 93.31 GB whole)\n"));
  EXPECT_THAT(run.out, Not(HasSubstr("AdaRound of self_attn.q_proj")));
  run = Plan("aespa", 80'000'000'000, /*json=*/true);
  ASSERT_EQ(run.code, 0) << run.err;
  const nlohmann::json plan = nlohmann::json::parse(run.out);
  const nlohmann::json& device = plan["device"];
  EXPECT_EQ(device["device_plan"]["attention_statistics"],
            nlohmann::json({{"kv_heads", 96}, {"heads_per_pass", 48}, {"passes", 2}}));
  EXPECT_EQ(device["kept_attention_window_bytes"], uint64_t{16} * 301'989'888);  // 16 windows of x, q and k
  EXPECT_EQ(plan["worker"]["terms"]["kept attention windows"], uint64_t{16} * 301'989'888);
  EXPECT_EQ(device["layer_fits"], true);
  ASSERT_EQ(device["adaround"]["linears"].size(), 1u);
  EXPECT_EQ(device["adaround"]["linears"][0]["linear"], "self_attn.v_proj");
  EXPECT_EQ(device["adaround"]["linears"][0]["slice_units"], nlohmann::json({48, 48}));

  // Below one head's bound the worker refuses the job at its start; so does the plan, in its words.
  run = Plan("aespa", 56'774'737'919);
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("--device-memory 56774737919: aespa on cuda:0: a layer needs 56.77 GB of device "
                                 "memory under sequential propagation"));
  EXPECT_EQ(Plan("aespa", 56'774'737'920).code, 0);
}

TEST_F(PlanDeviceMemoryTest, RtnHasNothingForTheDevice) {
  Exited run = Plan("rtn", 80'000'000'000);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("on CUDA workers with 80.00 GB free: no calibration, solves on the CPU (RTN needs "
                                 "no calibration: nothing for the device to do)\n"));
  EXPECT_THAT(run.out, Not(HasSubstr("device plan")));
  run = Plan("rtn", 80'000'000'000, /*json=*/true);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_FALSE(nlohmann::json::parse(run.out)["device"].contains("device_plan"));
}

}  // namespace
}  // namespace qshard
