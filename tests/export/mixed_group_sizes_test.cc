// A GPTQ checkpoint whose linears have different group sizes (FineQuant's output): the writer
// records them as quantization_config.dynamic entries, the loader reads each linear back as
// exactly the solver's weight, `eval`'s kernels run it equal to the dequantized reference, and
// a config that does not record them is refused. Also the resolution rules of those entries.
#include <fstream>
#include <iterator>
#include <map>

#include "core/checkpoint.h"
#include "core/tokenizer/tokenizer.h"
#include "engine/model_loading.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/scoped_temp_dir.h"
#include "worker/eval/evaluate.h"
#include "worker/export/gptq_checkpoint_writer.h"
#include "worker/export/gptq_tensor_source.h"
#include "worker/export/module_group_sizes.h"
#include "worker/model/resident_model.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using testing::ReadFileBytes;

constexpr char kModel[] = "../shared/data/tinystories-656k";
constexpr char kText[] = "../shared/data/wikitext-2-raw/wiki.test.raw";
constexpr int kBits = 4;

// Per channel by default; these linears get their own group size (some per layer differ).
int GroupSizeOf(int layer, const std::string& linear) {
  static const std::map<std::string, int> sizes = {
      {"self_attn.q_proj", 32}, {"self_attn.v_proj", 64}, {"mlp.up_proj", 32}, {"mlp.down_proj", 128}};
  const auto it = sizes.find(linear);
  if (it == sizes.end()) return layer == 1 && linear == "self_attn.o_proj" ? 64 : -1;
  return it->second;
}

// Writes the mixed checkpoint; returns every linear's solved weight by full weight name.
std::map<std::string, Tensor> WriteMixedCheckpoint(const std::string& out) {
  std::map<std::string, Tensor> solved;
  auto model = ResidentModel::Open(kModel);
  EXPECT_TRUE(model.ok()) << model.status() << " (needs " << kModel << ")";
  auto source = Checkpoint::Open(kModel);
  if (!model.ok() || !source.ok()) return solved;
  const DecoderModel& decoder = (*model)->decoder();
  GptqExportSpec spec;
  spec.bits = kBits;
  spec.method = "finequant";
  for (int layer = 0; layer < decoder.config().num_layers; ++layer)
    for (const LinearSpec& l : decoder.layer_spec().linears)
      if (GroupSizeOf(layer, l.name) != spec.group_size)
        spec.module_group_sizes[decoder.tensor_names().Layer(layer) + l.name] = GroupSizeOf(layer, l.name);
  auto writer = GptqCheckpointWriter::Create(out, **source, decoder, spec, {});
  EXPECT_TRUE(writer.ok()) << writer.status();
  if (!writer.ok()) return solved;
  for (int layer = 0; layer < decoder.config().num_layers; ++layer) {
    std::map<std::string, QuantizedWeight> quantized;
    for (const LinearSpec& l : decoder.layer_spec().linears) {
      QuantSpec quant;
      quant.bits = kBits;
      quant.group_size = GroupSizeOf(layer, l.name);
      LayerProblem problem;
      problem.weight = &(*model)->layer(layer).linear(l.name).weight;
      auto result = MakeSolver("rtn", quant).value()->Solve(problem);
      EXPECT_TRUE(result.ok()) << result.status();
      if (!result.ok()) return solved;
      solved.emplace(decoder.tensor_names().Layer(layer) + l.name + ".weight", result->dequantized);
      quantized.emplace(l.name, std::move(result->weight));
    }
    const absl::Status written = (*writer)->WriteLayer(layer, (*model)->layer(layer), quantized);
    EXPECT_TRUE(written.ok()) << written;
  }
  const absl::Status finished = (*writer)->Finish(nlohmann::json::object());
  EXPECT_TRUE(finished.ok()) << finished;
  return solved;
}

TEST(MixedGroupSizesTest, RoundTripsAndRunsThroughTheKernelsAsTheDequantizedModel) {
  testing::ScopedTempDir dir;
  const std::string out = dir.Child("mixed");
  const std::map<std::string, Tensor> solved = WriteMixedCheckpoint(out);
  ASSERT_EQ(solved.size(), 14u);

  const nlohmann::json q = nlohmann::json::parse(ReadFileBytes(out + "/config.json"))["quantization_config"];
  EXPECT_EQ(q["group_size"], -1);
  EXPECT_EQ(q["dynamic"].size(), 9u);  // 4 linears x 2 layers + layer 1's o_proj
  EXPECT_EQ(q["dynamic"]["+:^model\\.layers\\.1\\.self_attn\\.o_proj$"], nlohmann::json({{"group_size", 64}}));
  EXPECT_EQ(nlohmann::json::parse(ReadFileBytes(out + "/quantize_config.json")), q);

  auto source = OpenModelSource(out);
  ASSERT_TRUE(source.ok()) << source.status();
  for (const auto& [name, weight] : solved) {
    auto stored = (*source)->Read(name);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->values(), weight.values()) << name;
  }

  auto exact = LoadModelForInference(out, 2, GptqLinearMode::kExact);
  auto dequantized = LoadModelForInference(out, 2, GptqLinearMode::kDequantize);
  ASSERT_TRUE(exact.ok() && dequantized.ok()) << exact.status() << dequantized.status();
  EXPECT_NE(exact->model->layer(0).linear("self_attn.q_proj").kernel, nullptr) << "must run through the kernels";
  std::ifstream in(kText);
  std::string text(std::istreambuf_iterator<char>(in), {});
  text.resize(std::min<size_t>(text.size(), 20000));
  auto tokens = exact->tokenizer.Encode(text);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EvalOptions options;
  options.seqlen = 256;
  options.max_windows = 3;
  auto result = Evaluate(*exact->model, *tokens, options, dequantized->model.get());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->windows, 3);
  // Float rounding only (fp32 sums in another order); a wrong group size anywhere moves the
  // perplexity by far more.
  EXPECT_NEAR(result->perplexity, result->base_perplexity, 1e-5 * result->base_perplexity);
  EXPECT_LT(result->kl_divergence, 1e-8);
}

TEST(MixedGroupSizesTest, AConfigWithoutTheModuleEntriesIsRefusedNamingTheModule) {
  testing::ScopedTempDir dir;
  const std::string out = dir.Child("mixed");
  ASSERT_EQ(WriteMixedCheckpoint(out).size(), 14u);
  nlohmann::json config = nlohmann::json::parse(ReadFileBytes(out + "/config.json"));
  config["quantization_config"].erase("dynamic");
  std::ofstream(out + "/config.json") << config.dump(2);
  auto source = OpenModelSource(out);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_TRUE((*source)->Read("model.layers.0.self_attn.k_proj.weight").ok());  // per channel, as the base says
  auto wrong = (*source)->Read("model.layers.0.self_attn.q_proj.weight");
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("model.layers.0.self_attn.q_proj"));
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("4 groups"));
}

TEST(ModuleGroupSizesTest, ResolvesLikeGptqModelsDynamicField) {
  nlohmann::json config = {{"group_size", 128}};
  config["dynamic"] = DynamicGroupSizeEntries({{"model.layers.0.mlp.down_proj", 32}});
  config["dynamic"]["-:model\\.layers\\.1\\..*"] = nlohmann::json::object();
  config["dynamic"][".*\\.2\\..*"] = {{"bits", 8}};
  auto sizes = ModuleGroupSizes::FromConfig(config);
  ASSERT_TRUE(sizes.ok()) << sizes.status();
  EXPECT_EQ(sizes->Of("model.layers.0.mlp.down_proj"), 32);
  EXPECT_EQ(sizes->Of("model.layers.0.mlp.down_proj_extra"), 128);  // the written keys are anchored
  EXPECT_EQ(sizes->Of("model.layers.10.mlp.down_proj"), 128);
  EXPECT_EQ(sizes->Of("model.layers.1.mlp.up_proj"), std::nullopt);  // excluded
  EXPECT_EQ(sizes->Of("model.layers.2.mlp.up_proj"), 128);           // matched, no group_size: the base
  EXPECT_EQ(sizes->Of("xmodel.layers.1.mlp.up_proj"), 128);          // re.match: anchored at the start

  EXPECT_EQ(ModuleGroupSizes::FromConfig({{"bits", 4}})->Of("anything"), std::nullopt);
  auto bad = ModuleGroupSizes::FromConfig({{"group_size", 32}, {"dynamic", {{"+:(", {{"group_size", 8}}}}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("dynamic[\"+:(\"]"));
  EXPECT_FALSE(ModuleGroupSizes::FromConfig({{"group_size", "32"}}).ok());
  EXPECT_FALSE(ModuleGroupSizes::FromConfig({{"group_size", 32}, {"dynamic", {{"a", {{"group_size", 1.5}}}}}}).ok());
}

}  // namespace
}  // namespace qshard
