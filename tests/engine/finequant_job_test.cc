// FineQuant end to end on the real TinyStories-656K model: a job that needs no calibration data
// (and says so when given some), picks more than one group size, writes the same bytes when
// rerun, and through the kernels comes closer to the fp32 model than RTN at the coarse size.
#include <set>

#include "engine/job_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"

namespace qshard {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using testing::ReadFileBytes;

// Per channel to start from, with the calibration flags of a calibrated job left in.
JobSpec FineQuantJob(const std::string& method, const std::string& out, int threads) {
  JobSpec spec = tiny_jobs::Job(method, 4, out, /*nsamples=*/4, /*seqlen=*/128);
  spec.execution.threads = threads;
  return spec;
}

TEST(FineQuantJobTest, AdaptsRerunsToTheSameBytesAndBeatsRtnPerChannel) {
  testing::ScopedTempDir dir;
  std::vector<std::string> log;
  JobEvents events;
  events.log = [&](const std::string& line) { log.push_back(line); };
  auto report = RunEmbeddedJob(FineQuantJob("finequant", dir.Child("a"), 2), events);
  ASSERT_TRUE(report.ok()) << report.status() << " (needs " << tiny_jobs::kModel << ")";
  EXPECT_THAT(log, Contains(HasSubstr("needs no calibration: calibration flags unused")));
  EXPECT_THAT(log, Contains(HasSubstr("finequant: group sizes chosen from the weights")));
  EXPECT_FALSE((*report).contains("calibration"));

  const nlohmann::json q = nlohmann::json::parse(ReadFileBytes(dir.Child("a") + "/config.json"))["quantization_config"];
  EXPECT_EQ(q["meta"]["method"], "finequant");
  std::set<int> sizes = {q["group_size"].get<int>()};
  for (const auto& entry : q["dynamic"]) sizes.insert(entry["group_size"].get<int>());
  EXPECT_GE(sizes.size(), 2u) << q.dump();
  EXPECT_LT(q["dynamic"].size(), 14u) << "a model whose every linear is refined has not adapted";

  ASSERT_TRUE(RunEmbeddedJob(FineQuantJob("finequant", dir.Child("b"), 1), JobEvents()).ok());
  const std::string bytes = ReadFileBytes(dir.Child("a") + "/model.safetensors");
  EXPECT_FALSE(bytes.empty());
  EXPECT_TRUE(bytes == ReadFileBytes(dir.Child("b") + "/model.safetensors"));
  EXPECT_EQ(ReadFileBytes(dir.Child("a") + "/config.json"), ReadFileBytes(dir.Child("b") + "/config.json"));

  ASSERT_TRUE(RunEmbeddedJob(FineQuantJob("rtn", dir.Child("rtn"), 2), JobEvents()).ok());
  const EvalResult finequant = tiny_jobs::EvaluateAgainstBase(dir.Child("a"), 12);
  const EvalResult rtn = tiny_jobs::EvaluateAgainstBase(dir.Child("rtn"), 12);
  EXPECT_LT(finequant.kl_divergence, rtn.kl_divergence);
}

}  // namespace
}  // namespace qshard
