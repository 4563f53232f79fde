// The GPTQ checkpoint writer end to end under injected faults, on a one-layer synthetic OPT:
// a failed write, a full disk, a failed fsync or a crash before the renames each end in an
// error naming the file, leave an earlier complete output directory (of another layout: one
// file where the new one is sharded) exactly as it was and still loadable, and a rerun writes
// the bytes of a clean export.
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "core/checkpoint.h"
#include "core/synthetic_model.h"
#include "gtest/gtest.h"
#include "tests/core/fault_checks.h"
#include "tests/core/scoped_temp_dir.h"
#include "worker/export/gptq_checkpoint_writer.h"
#include "worker/export/gptq_tensor_source.h"
#include "worker/model/decoder_model.h"
#include "worker/model/tensor_source.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using qshard::testing::ScopedTempDir;

// Quantizes every linear with RTN and exports it: the writer's whole life (declare, copy the
// outside tensors, stream the layers, write configs, tokenizer files and report) through `env`.
absl::Status ExportRtn(const std::string& model_dir, const std::string& out, int bits, uint64_t max_shard_bytes,
                       Env* env) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> opened, Checkpoint::Open(model_dir));
  std::shared_ptr<const Checkpoint> checkpoint = std::move(opened);
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<DecoderModel> model,
                          DecoderModel::Load(std::make_shared<CheckpointTensorSource>(checkpoint), checkpoint->config()));
  QuantSpec quant;
  quant.bits = bits;
  quant.group_size = 128;
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver, MakeSolver("rtn", quant));
  GptqExportSpec spec;
  spec.bits = bits;
  spec.group_size = quant.group_size;
  spec.method = "rtn";
  spec.max_shard_bytes = max_shard_bytes;
  QSHARD_ASSIGN_OR_RETURN(auto writer, GptqCheckpointWriter::Create(out, *checkpoint, *model, spec, {}, env));
  for (int layer = 0; layer < model->config().num_layers; ++layer) {
    QSHARD_ASSIGN_OR_RETURN(DecoderLayerWeights weights, model->LoadLayer(layer));
    std::map<std::string, QuantizedWeight> quantized;
    for (const LinearSpec& linear : model->layer_spec().linears) {
      LayerProblem problem;
      problem.name = linear.name;
      problem.weight = &weights.linear(linear.name).weight;
      QSHARD_ASSIGN_OR_RETURN(QuantizedLinear solved, solver->Solve(problem));
      quantized.emplace(linear.name, std::move(solved.weight));
    }
    QSHARD_RETURN_IF_ERROR(writer->WriteLayer(layer, weights, quantized));
  }
  return writer->Finish(nlohmann::json{{"method", "rtn"}, {"bits", bits}});
}

// 25 MB shards: the positions, then the 77 MB token embeddings alone, then the rest: 3 shards.
constexpr uint64_t kShardBytes = uint64_t{25} << 20;

absl::Status ExportW4(const std::string& model_dir, const std::string& out, Env* env) {
  return ExportRtn(model_dir, out, 4, kShardBytes, env);
}

// One synthetic model and one earlier output for all the tests.
class GptqCheckpointFaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScopedTempDir;
    SyntheticSpec spec;
    spec.preset = "opt-125m";
    spec.num_layers = 1;
    spec.out_dir = dir_->Child("model");
    const absl::Status model = WriteSyntheticModel(spec);
    ASSERT_TRUE(model.ok()) << model << " (needs ../shared/data for the tokenizer files)";
    // The earlier output: W8 in one file, where the rewrite is W4 in several shards.
    const absl::Status old = ExportRtn(model_dir(), old_dir(), 8, uint64_t{1} << 30, Env::Default());
    ASSERT_TRUE(old.ok()) << old;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string model_dir() { return dir_->Child("model"); }
  static std::string old_dir() { return dir_->Child("old"); }

  static ScopedTempDir* dir_;
};
ScopedTempDir* GptqCheckpointFaultsTest::dir_ = nullptr;

TEST_F(GptqCheckpointFaultsTest, AnEarlierOutputSurvivesEveryFaultAndARerunWritesTheCleanBytes) {
  qshard::testing::CheckEveryFault(
      [](const std::string& dir, Env* env) { return ExportW4(model_dir(), dir, env); },
      [](const std::string& dir) {
        std::error_code ec;
        fs::copy(old_dir(), dir, fs::copy_options::overwrite_existing, ec);
        return ec ? absl::InternalError(ec.message()) : absl::OkStatus();
      },
      "model-0000");
}

TEST_F(GptqCheckpointFaultsTest, AFailedRewriteLeavesTheEarlierModelLoadable) {
  ScopedTempDir dir;
  const std::string out = dir.Child("out");
  fs::copy(old_dir(), out);
  testing::FaultInjectionEnv env;
  env.FailAfterBytes(50 << 20);  // mid-embeddings
  const absl::Status status = ExportW4(model_dir(), out, &env);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  auto source = OpenModelSource(out);
  ASSERT_TRUE(source.ok()) << source.status();
  auto gptq = std::dynamic_pointer_cast<const GptqTensorSource>(*source);
  ASSERT_NE(gptq, nullptr);
  EXPECT_EQ(gptq->bits(), 8);  // still the earlier W8 model
  EXPECT_TRUE((*source)->Read("model.decoder.layers.0.fc1.weight").ok());
}

TEST_F(GptqCheckpointFaultsTest, AFailedFirstWriteLeavesNoModelBehind) {
  ScopedTempDir dir;
  const std::string out = dir.Child("new");
  testing::FaultInjectionEnv env;
  env.FailSync();
  EXPECT_FALSE(ExportW4(model_dir(), out, &env).ok());
  // The directory was created, but holds nothing a loader could mistake for a model.
  EXPECT_TRUE(fs::is_directory(out));
  EXPECT_TRUE(fs::is_empty(out));
  EXPECT_EQ(Checkpoint::Open(out).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qshard
