// Z-Fold and aespa end to end on the real TinyStories-656K model: quality against GPTQ on
// held-out windows, identical bytes on a rerun, and --skip of a linear that shares its input
// norm with quantized siblings (ζ must then stay out of that norm, or the skipped linear would
// read scaled inputs).
#include <fstream>
#include <sstream>

#include "core/checkpoint.h"
#include "engine/job_runner.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "coordinator/model_loading.h"
#include "worker/eval/evaluate.h"

namespace qshard {
namespace {

constexpr char kModel[] = "../shared/data/tinystories-656k";
constexpr char kText[] = "../shared/data/wikitext-2-raw/wiki.test.raw";

JobSpec Job(const std::string& method, const std::string& out) {
  JobSpec spec;
  spec.model_dir = kModel;
  spec.out_dir = out;
  spec.method.method = method;
  spec.method.spec.bits = 3;
  spec.method.zfold_max_iters = 10;
  spec.method.aespa_adaround_iters = 300;
  spec.calibration.text = kText;
  spec.calibration.lines = {1, 2179};
  spec.calibration.nsamples = 16;
  spec.calibration.seqlen = 256;
  spec.execution.threads = 2;
  return spec;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

double KlAgainstBase(const std::string& dir) {
  auto model = LoadModelForInference(dir, 2);
  auto base = LoadModelForInference(kModel, 2);
  EXPECT_TRUE(model.ok() && base.ok()) << model.status() << base.status();
  auto tokens = TokenizeTextFile(base->tokenizer, kText, {2180, 4358});
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  EvalOptions options;
  options.seqlen = 512;
  options.max_windows = 8;
  auto result = Evaluate(*model->model, *tokens, options, base->model.get());
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->kl_divergence : 1e9;
}

TEST(FoldingMethodsJobTest, ZfoldAndAespaBeatGptqAtW3AndRerunToTheSameBytes) {
  testing::ScopedTempDir dir;
  for (const char* method : {"gptq", "zfold", "aespa"}) {
    auto report = RunEmbeddedJob(Job(method, dir.Child(method)), JobEvents());
    ASSERT_TRUE(report.ok()) << method << ": " << report.status();
  }
  const double gptq = KlAgainstBase(dir.Child("gptq"));
  const double zfold = KlAgainstBase(dir.Child("zfold"));
  const double aespa = KlAgainstBase(dir.Child("aespa"));
  std::printf("W3 per channel, 16 windows of 256: KL GPTQ %.4f, Z-Fold %.4f, aespa %.4f\n", gptq, zfold, aespa);
  EXPECT_LT(zfold, gptq);
  EXPECT_LT(aespa, gptq);

  for (const char* method : {"zfold", "aespa"}) {
    const std::string again = dir.Child(std::string(method) + "-again");
    ASSERT_TRUE(RunEmbeddedJob(Job(method, again), JobEvents()).ok());
    EXPECT_TRUE(ReadBytes(dir.Child(method) + "/model.safetensors") == ReadBytes(again + "/model.safetensors"))
        << method;
  }
}

// The tensors of layer 0 named `name` in the checkpoint at `dir`, as floats.
std::vector<float> Read(const std::string& dir, const std::string& name) {
  auto checkpoint = Checkpoint::Open(dir);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto tensor = (*checkpoint)->ReadFloat(name);
  EXPECT_TRUE(tensor.ok()) << name << ": " << tensor.status();
  return tensor.ok() ? tensor->values() : std::vector<float>();
}

TEST(FoldingMethodsJobTest, SkippingASiblingKeepsZetaOutOfTheSharedNorm) {
  testing::ScopedTempDir dir;
  for (const char* method : {"zfold", "aespa"}) {
    JobSpec spec = Job(method, dir.Child(method));
    spec.method.aespa_adaround_iters = 20;
    spec.calibration.nsamples = 4;
    spec.skip = {"self_attn.k_proj", "mlp.up_proj"};
    ASSERT_TRUE(RunEmbeddedJob(spec, JobEvents()).ok()) << method;
    for (const char* tensor : {"model.layers.0.self_attn.k_proj.weight", "model.layers.0.input_layernorm.weight",
                               "model.layers.0.post_attention_layernorm.weight"})
      EXPECT_EQ(Read(dir.Child(method), tensor), Read(kModel, tensor)) << method << " " << tensor;
    // A fold into an unshared producer still happens: down_proj's ζ goes into the rows of the
    // (skipped, full-precision) up_proj, which therefore changes.
    EXPECT_NE(Read(dir.Child(method), "model.layers.0.mlp.up_proj.weight"),
              Read(kModel, "model.layers.0.mlp.up_proj.weight"))
        << method;
  }
}

}  // namespace
}  // namespace qshard
