// Z-Fold and aespa end to end on the real TinyStories-656K model: quality against GPTQ on
// held-out windows, identical bytes on a rerun, and --skip of a linear that shares its input
// norm with quantized siblings (ζ must then stay out of that norm, or the skipped linear would
// read scaled inputs).
#include "core/checkpoint.h"
#include "engine/job_runner.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"

namespace qshard {
namespace {

using testing::ReadFileBytes;
using tiny_jobs::kModel;

JobSpec Job(const std::string& method, const std::string& out) {
  JobSpec spec = tiny_jobs::Job(method, 3, out, /*nsamples=*/16, /*seqlen=*/256);
  spec.calibration.shards = 8;
  spec.method.zfold_max_iters = 10;
  spec.method.aespa_adaround_iters = 300;
  return spec;
}

double KlAgainstBase(const std::string& dir) { return tiny_jobs::EvaluateAgainstBase(dir, 8).kl_divergence; }

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
    EXPECT_TRUE(ReadFileBytes(dir.Child(method) + "/model.safetensors") == ReadFileBytes(again + "/model.safetensors"))
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
