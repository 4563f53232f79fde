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

// A model quantized once (RTN, every linear), to be exported as often as a test needs.
struct QuantizedModel {
  std::shared_ptr<const Checkpoint> checkpoint;
  std::unique_ptr<DecoderModel> model;
  GptqExportSpec spec;
  std::vector<DecoderLayerWeights> weights;  // per layer
  std::vector<std::map<std::string, QuantizedWeight>> quantized;
};

absl::StatusOr<std::unique_ptr<QuantizedModel>> QuantizeRtn(const std::string& model_dir, int bits,
                                                            uint64_t max_shard_bytes) {
  auto q = std::make_unique<QuantizedModel>();
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> opened, Checkpoint::Open(model_dir));
  q->checkpoint = std::move(opened);
  QSHARD_ASSIGN_OR_RETURN(q->model, DecoderModel::Load(std::make_shared<CheckpointTensorSource>(q->checkpoint),
                                                       q->checkpoint->config()));
  QuantSpec quant;
  quant.bits = bits;
  quant.group_size = 128;
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver, MakeSolver("rtn", quant));
  q->spec.bits = bits;
  q->spec.group_size = quant.group_size;
  q->spec.method = "rtn";
  q->spec.max_shard_bytes = max_shard_bytes;
  for (int layer = 0; layer < q->model->config().num_layers; ++layer) {
    QSHARD_ASSIGN_OR_RETURN(DecoderLayerWeights weights, q->model->LoadLayer(layer));
    std::map<std::string, QuantizedWeight> quantized;
    for (const LinearSpec& linear : q->model->layer_spec().linears) {
      LayerProblem problem;
      problem.name = linear.name;
      problem.weight = &weights.linear(linear.name).weight;
      QSHARD_ASSIGN_OR_RETURN(QuantizedLinear solved, solver->Solve(problem));
      quantized.emplace(linear.name, std::move(solved.weight));
    }
    q->weights.push_back(std::move(weights));
    q->quantized.push_back(std::move(quantized));
  }
  return q;
}

// The writer's whole life through `env`: declare, copy the outside tensors, stream the
// layers, then the configs, tokenizer files and report.
absl::Status Export(const QuantizedModel& q, const std::string& out, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto writer, GptqCheckpointWriter::Create(out, *q.checkpoint, *q.model, q.spec, {}, env));
  for (size_t layer = 0; layer < q.weights.size(); ++layer)
    QSHARD_RETURN_IF_ERROR(writer->WriteLayer(static_cast<int>(layer), q.weights[layer], q.quantized[layer]));
  return writer->Finish(nlohmann::json{{"method", "rtn"}, {"bits", q.spec.bits}});
}

// One synthetic model, its earlier output (W8 in one file) and the W4 model every test
// exports (in 25 MB shards: the positions, then the 77 MB token embeddings alone, then the
// rest: 3 shards).
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
    auto w8 = QuantizeRtn(spec.out_dir, 8, uint64_t{1} << 30);
    ASSERT_TRUE(w8.ok()) << w8.status();
    const absl::Status old = Export(**w8, old_dir(), Env::Default());
    ASSERT_TRUE(old.ok()) << old;
    auto w4 = QuantizeRtn(spec.out_dir, 4, uint64_t{25} << 20);
    ASSERT_TRUE(w4.ok()) << w4.status();
    w4_ = w4->release();
  }
  static void TearDownTestSuite() {
    delete w4_;
    delete dir_;
    w4_ = nullptr;
    dir_ = nullptr;
  }
  static std::string old_dir() { return dir_->Child("old"); }
  static absl::Status ExportW4(const std::string& out, Env* env) { return Export(*w4_, out, env); }

  static ScopedTempDir* dir_;
  static QuantizedModel* w4_;
};
ScopedTempDir* GptqCheckpointFaultsTest::dir_ = nullptr;
QuantizedModel* GptqCheckpointFaultsTest::w4_ = nullptr;

TEST_F(GptqCheckpointFaultsTest, AnEarlierOutputSurvivesEveryFaultAndARerunWritesTheCleanBytes) {
  qshard::testing::CheckEveryFault(
      [](const std::string& dir, Env* env) { return ExportW4(dir, env); },
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
  const absl::Status status = ExportW4(out, &env);
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
  EXPECT_FALSE(ExportW4(out, &env).ok());
  // The directory was created, but holds nothing a loader could mistake for a model.
  EXPECT_TRUE(fs::is_directory(out));
  EXPECT_TRUE(fs::is_empty(out));
  EXPECT_EQ(Checkpoint::Open(out).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qshard
