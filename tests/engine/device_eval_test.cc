// `qshard eval --device` on the host side, through a stand-in CudaDevice whose
// evaluation model runs the CPU layers (packed linears dequantized by the
// checkpoint's own unpacking): what LoadModelOnDevice hands the device per
// --kernels (packed tensors or float weights, which PackedLinearKernels), that
// Evaluate through the device's WindowLogits gives the CPU dequantized path's
// numbers exactly, and that refusals reach the caller. Also a job's final
// validation on such a device (--validate-device): recorded, refused, defaulted.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/synthetic_model.h"
#include "core/tokenizer/text_tokens.h"
#include "engine/device_model_loading.h"
#include "engine/job_runner.h"
#include "engine/local_worker.h"
#include "engine/validation.h"
#include "engine/model_loading.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"
#include "worker/eval/evaluate.h"
#include "worker/eval/generate.h"
#include "worker/model/kv_cache.h"

namespace qshard {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

struct StandInLog {
  std::vector<PackedLinearKernels> kernels;  // per NewModel
  int layers = 0;
  int packed = 0;  // packed linears handed over
  int float_linears = 0;
  std::map<int, int> packed_bits;  // count by bits
};

// The CPU layers over what the device was handed.
class CpuModel final : public DeviceModel {
 public:
  CpuModel(const DecoderModel& model, StandInLog* log) : model_(model), log_(log) {}
  absl::Status LoadLayer(int layer, const DeviceModelLayer& host) override {
    if (layer != static_cast<int>(layers_.size())) return absl::InternalError("out of order");
    DecoderLayerWeights w = host.weights;
    for (const auto& [name, packed] : host.packed) {
      ++log_->packed;
      ++log_->packed_bits[packed.bits];
      if (refuse_packed)
        return absl::FailedPreconditionError("layer " + std::to_string(layer) + " " + name + " refused");
      QSHARD_ASSIGN_OR_RETURN(QuantizedWeight q, UnpackGptq(packed));
      w.linears[name].weight = q.Dequantized();
    }
    log_->float_linears += static_cast<int>(host.weights.linears.size() - host.packed.size());
    QSHARD_RETURN_IF_ERROR(model_.ValidateLayer(w));
    layers_.push_back(std::move(w));
    ++log_->layers;
    return absl::OkStatus();
  }
  absl::StatusOr<Tensor> Logits(const Tensor& hidden, int64_t rows) override {
    Tensor h = hidden;
    for (size_t i = 0; i < layers_.size(); ++i) model_.RunLayer(static_cast<int>(i), layers_[i], h, 1, h.rows());
    return model_.Logits(Tensor({rows, h.cols()}, std::vector<float>(h.row(0), h.row(rows))));
  }
  absl::StatusOr<Tensor> NextLogits(const Tensor& hidden) override {
    Tensor h = hidden;
    for (size_t i = 0; i < layers_.size(); ++i) model_.RunLayerCached(static_cast<int>(i), layers_[i], h, cache_);
    const int64_t last = h.rows() - 1;
    return model_.Logits(Tensor({1, h.cols()}, std::vector<float>(h.row(last), h.row(last + 1))));
  }
  void ResetCache() override { cache_ = KvCache(model_.config()); }
  std::string Describe() const override { return "stand-in"; }

  bool refuse_packed = false;

 private:
  const DecoderModel& model_;
  StandInLog* log_;
  std::vector<DecoderLayerWeights> layers_;
  KvCache cache_{model_.config()};
};

class StandInDevice : public CudaDevice {
 public:
  const Device& device() const override { return device_; }
  std::string Describe() const override { return "cuda:0 (stand-in)"; }
  absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewHessianSum(int64_t) override {
    return absl::UnimplementedError("no sums");
  }
  absl::StatusOr<std::unique_ptr<Solver>> MakeGptqSolver(const QuantSpec&) override {
    return absl::UnimplementedError("no solver");
  }
  absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewAttentionStats(const ModelConfig&, int64_t) override {
    return absl::UnimplementedError("no attention statistics");
  }
  absl::StatusOr<std::unique_ptr<ForwardDevice>> NewForward(const DecoderModel&, int64_t,
                                                            const ForwardStatistics&) override {
    return absl::UnimplementedError("no forward");
  }
  absl::StatusOr<std::unique_ptr<DeviceModel>> NewModel(const DecoderModel& model,
                                                        PackedLinearKernels kernels) override {
    log.kernels.push_back(kernels);
    auto made = std::make_unique<CpuModel>(model, &log);
    made->refuse_packed = refuse_packed;
    return std::unique_ptr<DeviceModel>(std::move(made));
  }

  StandInLog log;
  bool refuse_packed = false;

 private:
  Device device_{Device::Kind::kCuda, 0};
};

// A device without an evaluation model (CudaDevice's default).
class NoModelDevice : public StandInDevice {
 public:
  absl::StatusOr<std::unique_ptr<DeviceModel>> NewModel(const DecoderModel& model,
                                                        PackedLinearKernels kernels) override {
    return CudaDevice::NewModel(model, kernels);
  }
};

constexpr int64_t kWindows = 3;
constexpr int kLayers = 2;             // TinyStories-656K's
constexpr int kLinears = kLayers * 7;  // q, k, v, o, gate, up, down

EvalOptions Options() {
  EvalOptions options;
  options.seqlen = 128;
  options.max_windows = kWindows;
  options.batch_windows = 1;  // the stand-in runs one window per call, as the device does
  return options;
}

std::vector<int32_t> Tokens(const Tokenizer& tokenizer) {
  auto tokens = TokenizeTextFile(tokenizer, tiny_jobs::kText, {2180, 2600});
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? *tokens : std::vector<int32_t>();
}

// The CPU's --kernels dequantize evaluation of `dir` against the fp32 model.
EvalResult CpuDequantized(const std::string& dir) {
  auto model = LoadModelForInference(dir, 2, GptqLinearMode::kDequantize);
  auto base = LoadModelForInference(tiny_jobs::kModel, 2);
  EXPECT_TRUE(model.ok() && base.ok()) << model.status() << base.status();
  if (!model.ok() || !base.ok()) return EvalResult();
  auto result = Evaluate(*model->model, Tokens(model->tokenizer), Options(), base->model.get());
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : EvalResult();
}

EvalResult OnDevice(const std::string& dir, GptqLinearMode kernels, StandInDevice& device) {
  auto model = LoadModelOnDevice(dir, 2, kernels, device);
  auto base = LoadModelOnDevice(tiny_jobs::kModel, 2, GptqLinearMode::kDequantize, device);
  EXPECT_TRUE(model.ok() && base.ok()) << model.status() << base.status();
  if (!model.ok() || !base.ok()) return EvalResult();
  EXPECT_EQ(model->kernels, "stand-in");
  auto result = Evaluate(*model->model, Tokens(model->tokenizer), Options(), base->model.get());
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : EvalResult();
}

class DeviceEvalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::ScopedTempDir();
    auto report = RunEmbeddedJob(tiny_jobs::Job("rtn", 4, dir_->Child("rtn"),
                                                /*nsamples=*/4, /*seqlen=*/64),
                                 JobEvents());
    ASSERT_TRUE(report.ok()) << report.status();
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Checkpoint() { return dir_->Child("rtn"); }

  static testing::ScopedTempDir* dir_;
};
testing::ScopedTempDir* DeviceEvalTest::dir_ = nullptr;

TEST_F(DeviceEvalTest, ExactHandsOverEveryLinearPackedAndMatchesTheCpuDequantizedPath) {
  StandInDevice device;
  const EvalResult cpu = CpuDequantized(Checkpoint());
  const EvalResult got = OnDevice(Checkpoint(), GptqLinearMode::kExact, device);
  ASSERT_EQ(device.log.kernels.size(), 2u);
  EXPECT_EQ(device.log.kernels[0], PackedLinearKernels::kWeightOnly);
  EXPECT_EQ(device.log.layers, 2 * kLayers);  // the model's and its base's
  EXPECT_EQ(device.log.packed,
            kLinears);  // every linear of the quantized model, none of the base
  EXPECT_EQ(device.log.packed_bits[4], kLinears);
  EXPECT_EQ(device.log.float_linears, kLinears);
  EXPECT_EQ(got.windows, kWindows);
  EXPECT_EQ(got.perplexity, cpu.perplexity);
  EXPECT_EQ(got.kl_divergence, cpu.kl_divergence);
  EXPECT_EQ(got.top1_agreement, cpu.top1_agreement);
  EXPECT_EQ(got.base_perplexity, cpu.base_perplexity);
  EXPECT_GT(got.kl_divergence, 0.0);
}

TEST_F(DeviceEvalTest, Int8AsksForW8A8AndDequantizeHandsOverFloats) {
  StandInDevice int8;
  OnDevice(Checkpoint(), GptqLinearMode::kInt8, int8);
  EXPECT_EQ(int8.log.kernels[0], PackedLinearKernels::kInt8Activations);
  EXPECT_EQ(int8.log.packed, kLinears);

  StandInDevice dequantize;
  const EvalResult got = OnDevice(Checkpoint(), GptqLinearMode::kDequantize, dequantize);
  EXPECT_EQ(dequantize.log.packed, 0);
  EXPECT_EQ(dequantize.log.float_linears, 2 * kLinears);
  EXPECT_EQ(got.perplexity, CpuDequantized(Checkpoint()).perplexity);
}

TEST_F(DeviceEvalTest, GenerateThroughTheDeviceCacheGivesTheCpuIds) {
  StandInDevice device;
  auto on_device = LoadModelOnDevice(Checkpoint(), 2, GptqLinearMode::kExact, device);
  auto cpu = LoadModelForInference(Checkpoint(), 2, GptqLinearMode::kDequantize);
  ASSERT_TRUE(on_device.ok() && cpu.ok()) << on_device.status() << cpu.status();
  const std::vector<int32_t> prompt = {1, 417, 29, 1203, 88};
  auto expected = Generate(*cpu->model, prompt, 24, /*eos=*/-1);
  ASSERT_TRUE(expected.ok()) << expected.status();
  for (int run = 0; run < 2; ++run) {  // the second starts again from a reset cache
    auto got = Generate(*on_device->model, prompt, 24, /*eos=*/-1);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, *expected) << "run " << run;
  }
}

// OPT's learned positions are added on the host, so the host must count the decoded positions.
TEST(DeviceGenerateTest, OptPositionsFollowTheSequence) {
  testing::ScopedTempDir dir;
  SyntheticSpec spec;
  spec.preset = "opt-125m";
  spec.num_layers = 1;
  spec.out_dir = dir.Child("opt");
  spec.dtype = DType::kF32;
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());
  StandInDevice device;
  auto on_device = LoadModelOnDevice(spec.out_dir, 2, GptqLinearMode::kExact, device);
  auto cpu = LoadModelForInference(spec.out_dir, 2);
  ASSERT_TRUE(on_device.ok() && cpu.ok()) << on_device.status() << cpu.status();
  const std::vector<int32_t> prompt = {2, 100, 2000, 31000, 7};
  auto expected = Generate(*cpu->model, prompt, 12, /*eos=*/-1);
  auto got = Generate(*on_device->model, prompt, 12, /*eos=*/-1);
  ASSERT_TRUE(expected.ok() && got.ok()) << expected.status() << got.status();
  EXPECT_EQ(*got, *expected);
}

TEST_F(DeviceEvalTest, RefusalsReachTheCaller) {
  StandInDevice refusing;
  refusing.refuse_packed = true;
  auto refused = LoadModelOnDevice(Checkpoint(), 2, GptqLinearMode::kExact, refusing);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("layer 0 "));

  const std::string flattened = dir_->Child("flattenquant");
  auto report = RunEmbeddedJob(tiny_jobs::Job("flattenquant", 8, flattened, /*nsamples=*/4, /*seqlen=*/64), JobEvents());
  ASSERT_TRUE(report.ok()) << report.status();
  StandInDevice device;
  auto split = LoadModelOnDevice(flattened, 2, GptqLinearMode::kExact, device);
  ASSERT_FALSE(split.ok());
  EXPECT_EQ(split.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(split.status().message()),
              AllOf(HasSubstr("layers.0.self_attn.q_proj.weight is a FlattenQuant linear"), HasSubstr("--device cpu")));
  EXPECT_TRUE(LoadModelOnDevice(flattened, 2, GptqLinearMode::kDequantize, device).ok());

  NoModelDevice none;
  auto unsupported = LoadModelOnDevice(tiny_jobs::kModel, 2, GptqLinearMode::kExact, none);
  ASSERT_FALSE(unsupported.ok());
  EXPECT_EQ(unsupported.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(unsupported.status().message()), HasSubstr("cuda:0: no evaluation model on this device"));
}

// The fixture's job again, validated on the windows the eval tests use.
JobSpec ValidatedJob(const std::string& out) {
  JobSpec spec = tiny_jobs::Job("rtn", 4, out, /*nsamples=*/4, /*seqlen=*/64);
  spec.validation.text = tiny_jobs::kText;
  spec.validation.lines = {2180, 2600};
  spec.validation.seqlen = Options().seqlen;
  spec.validation.max_windows = kWindows;
  return spec;
}

nlohmann::json StoredReport(const std::string& dir) {
  return nlohmann::json::parse(testing::ReadFileBytes(dir + "/quant_report.json"));
}

TEST_F(DeviceEvalTest, AJobValidatesOnTheDeviceItIsGivenAndRecordsIt) {
  const std::string out = dir_->Child("validated-on-device");
  StandInDevice device;
  LocalWorker worker(/*threads=*/2);  // the job itself on the CPU
  auto report = RunJob(ValidatedJob(out), {&worker}, JobEvents(), &device);
  ASSERT_TRUE(report.ok()) << report.status();
  const nlohmann::json& v = (*report)["validation"];
  EXPECT_EQ(v["device"], "cuda:0");
  EXPECT_EQ(v["device_kernels"], "stand-in");
  EXPECT_EQ(v["kernels"], "exact");
  ASSERT_EQ(device.log.kernels.size(), 2u);  // the checkpoint under the exact kernels, then the base
  EXPECT_EQ(device.log.kernels[0], PackedLinearKernels::kWeightOnly);
  EXPECT_EQ(device.log.packed, kLinears);
  EXPECT_EQ(device.log.float_linears, kLinears);
  // The stand-in computes the dequantized model: the CPU's dequantize path, to the bit.
  const EvalResult cpu = CpuDequantized(out);
  EXPECT_EQ(v["windows"], kWindows);
  EXPECT_EQ(v["perplexity"].get<double>(), cpu.perplexity);
  EXPECT_EQ(v["base_perplexity"].get<double>(), cpu.base_perplexity);
  EXPECT_EQ(v["kl_divergence"].get<double>(), cpu.kl_divergence);
  EXPECT_EQ(v["top1_agreement"].get<double>(), cpu.top1_agreement);
  EXPECT_EQ(StoredReport(out)["validation"], v);

  // Without a device the same checkpoint validates on the CPU's exact kernels, keys as before.
  auto on_cpu = ValidateCheckpoint(ValidatedJob(out));
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
  std::vector<std::string> keys;
  for (const auto& [key, value] : on_cpu->items()) keys.push_back(key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("text", "lines", "seqlen", "windows", "kernels", "perplexity",
                                                   "base_perplexity", "kl_divergence", "top1_agreement"));
  EXPECT_NEAR((*on_cpu)["perplexity"].get<double>(), cpu.perplexity, 1e-5 * cpu.perplexity);
  EXPECT_EQ((*on_cpu)["base_perplexity"].get<double>(), cpu.base_perplexity);
}

TEST_F(DeviceEvalTest, AValidationTheDeviceRefusesFailsTheJobNamingTheDevice) {
  StandInDevice refusing;
  refusing.refuse_packed = true;
  LocalWorker worker(/*threads=*/2);
  const std::string out = dir_->Child("refused-validation");
  auto refused = RunJob(ValidatedJob(out), {&worker}, JobEvents(), &refusing);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("validation on cuda:0: layer 0 "));
  // The checkpoint is written, its report without a validation.
  EXPECT_FALSE(StoredReport(out).contains("validation"));

  NoModelDevice none;
  LocalWorker other(/*threads=*/2);
  auto unsupported = RunJob(ValidatedJob(dir_->Child("no-model")), {&other}, JobEvents(), &none);
  ASSERT_FALSE(unsupported.ok());
  EXPECT_THAT(std::string(unsupported.status().message()),
              HasSubstr("validation on cuda:0: cuda:0: no evaluation model on this device"));
}

// A checkpoint the device's kernels would refuse (3 bits) is refused before the job starts, not
// after its quantization (CheckValidationRunsOnDevice), on the runner's device or a worker's.
TEST_F(DeviceEvalTest, AJobTheValidationDeviceCannotReadIsRefusedBeforeAnyOutput) {
  StandInDevice device;
  LocalWorker worker(/*threads=*/2);
  const std::string out = dir_->Child("three-bits");
  JobSpec spec = ValidatedJob(out);
  spec.method.spec.bits = 3;
  auto refused = RunJob(spec, {&worker}, JobEvents(), &device);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--validate-device cpu"));
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_TRUE(device.log.kernels.empty());  // no model was loaded for it

  // The same on the job's worker (--validate-on worker), which points to the coordinator instead.
  auto on_device = std::make_shared<StandInDevice>();
  LocalWorker device_worker(/*threads=*/2, /*restartable=*/false, on_device);
  auto refused_on_worker = RunJob(spec, {&device_worker}, JobEvents(), ValidationSite::OnWorker());
  ASSERT_FALSE(refused_on_worker.ok());
  EXPECT_EQ(refused_on_worker.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused_on_worker.status().message()),
              AllOf(HasSubstr("--validate-on worker: the workers' device cuda:0"), HasSubstr("3-bit"),
                    HasSubstr("--validate-on coordinator")));
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_TRUE(on_device->log.kernels.empty());
}

// A validation device that cannot be opened is refused before any work, as --validate-device.
TEST_F(DeviceEvalTest, AnUnopenableValidationDeviceIsRefusedBeforeAnyOutput) {
  const std::string out = dir_->Child("unopenable");
  auto refused = RunEmbeddedJob(ValidatedJob(out), JobEvents(), Device{}, Device{Device::Kind::kCuda, 99});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), AllOf(HasSubstr("--validate-device"), HasSubstr("cuda:99")));
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace qshard
