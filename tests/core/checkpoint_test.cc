// Checkpoint: the real TinyStories directory, sharded checkpoints written by our own writer
// (lazy shard opening, bit-exact reads), and the directories it must refuse.
#include "core/checkpoint.h"

#include <filesystem>

#include "core/safetensors_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using qshard::testing::ScopedTempDir;
using qshard::testing::WriteTextFile;

constexpr char kTinyStories[] = "../shared/data/tinystories-656k";
constexpr char kSmallLlamaConfig[] =
    R"({"model_type":"llama","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,)"
    R"("vocab_size":16,"intermediate_size":16})";

std::string Message(const absl::Status& status) { return std::string(status.message()); }

TEST(CheckpointTest, OpensTinyStoriesWithItsConfigAndTiedHead) {
  auto ckpt = Checkpoint::Open(kTinyStories);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status() << " (needs " << kTinyStories << ")";
  const ModelConfig& c = (*ckpt)->config();
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 384);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ((*ckpt)->TensorNames().size(), 20u);
  EXPECT_TRUE((*ckpt)->Has("lm_head.weight"));
  EXPECT_FALSE((*ckpt)->Has("model.embed_tokens.weight"));
  auto w = (*ckpt)->ReadFloat("model.layers.0.self_attn.k_proj.weight");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->shape(), (std::vector<int64_t>{64, 128}));
}

// A two-shard checkpoint: "first.*" tensors in shard 1, "second.*" in shard 2.
class ShardedCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteTextFile(dir_.Child("config.json"), kSmallLlamaConfig);
    Tensor a({3, 5}), b({7}), c({4, 4});
    for (int64_t i = 0; i < a.size(); ++i) a[i] = 0.1f * i - 0.7f;
    for (int64_t i = 0; i < b.size(); ++i) b[i] = 1.0f / (i + 1);
    for (int64_t i = 0; i < c.size(); ++i) c[i] = -0.25f * i;
    tensors_ = {*EncodeFloatTensor("first.a", a, DType::kF32), *EncodeFloatTensor("first.b", b, DType::kF32),
                *EncodeFloatTensor("second.c", c, DType::kF16)};
    expected_ = {a, b, Tensor(c.shape(), {})};
    for (int64_t i = 0; i < c.size(); ++i) expected_[2].values().push_back(HalfToFloat(FloatToHalf(c[i])));
    ShardingOptions options;
    options.max_shard_bytes = 100;  // a (60 B) + b (28 B) fit; c (32 B) does not
    ASSERT_TRUE(WriteShardedSafetensors(dir_.path(), tensors_, options).ok());
  }

  ScopedTempDir dir_;
  std::vector<EncodedTensor> tensors_;
  std::vector<Tensor> expected_;
};

TEST_F(ShardedCheckpointTest, ReadsEveryTensorBitExact) {
  auto ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT((*ckpt)->shard_files(),
              ElementsAre("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"));
  EXPECT_THAT((*ckpt)->TensorNames(), ElementsAre("first.a", "first.b", "second.c"));
  for (size_t i = 0; i < tensors_.size(); ++i) {
    auto t = (*ckpt)->ReadFloat(tensors_[i].spec.name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->shape(), expected_[i].shape());
    EXPECT_EQ(t->values(), expected_[i].values()) << tensors_[i].spec.name;
    auto info = (*ckpt)->Info(tensors_[i].spec.name);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->dtype, tensors_[i].spec.dtype);
  }
  EXPECT_EQ((*ckpt)->ReadFloat("third").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ShardedCheckpointTest, OpensAShardOnlyWhenOneOfItsTensorsIsRead) {
  auto ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  // Had Open (or reading shard 1) mapped shard 2, its mapping would outlive the unlink and the
  // read below would succeed.
  ASSERT_TRUE((*ckpt)->ReadFloat("first.a").ok());
  fs::remove(dir_.Child("model-00002-of-00002.safetensors"));
  EXPECT_TRUE((*ckpt)->ReadFloat("first.b").ok());
  const auto second = (*ckpt)->ReadFloat("second.c");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(second.status()), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST_F(ShardedCheckpointTest, AShardOnceOpenedStaysReadable) {
  auto ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_TRUE((*ckpt)->ReadFloat("second.c").ok());
  fs::remove(dir_.Child("model-00002-of-00002.safetensors"));
  EXPECT_TRUE((*ckpt)->ReadFloat("second.c").ok());  // mapped once, not reopened per read
}

TEST_F(ShardedCheckpointTest, MissingShardIsReportedAtOpen) {
  fs::remove(dir_.Child("model-00002-of-00002.safetensors"));
  const auto ckpt = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("shard 'model-00002-of-00002.safetensors' is missing"));
}

TEST_F(ShardedCheckpointTest, IndexListingATensorTheShardLacksIsDataLoss) {
  WriteTextFile(dir_.Child("model.safetensors.index.json"),
                R"({"metadata":{},"weight_map":{"first.a":"model-00001-of-00002.safetensors",)"
                R"("ghost":"model-00002-of-00002.safetensors"}})");
  auto ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->Has("ghost"));
  const auto ghost = (*ckpt)->ReadFloat("ghost");
  EXPECT_EQ(ghost.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(ghost.status()), HasSubstr("index lists tensor 'ghost' but the shard lacks it"));
  EXPECT_EQ((*ckpt)->Info("ghost").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ShardedCheckpointTest, HostileIndexEntriesAreRejected) {
  for (const char* file : {"../x.safetensors", "/etc/passwd", "..", ".", "", "sub/dir.safetensors"}) {
    WriteTextFile(dir_.Child("model.safetensors.index.json"),
                  std::string(R"({"weight_map":{"first.a":")") + file + R"("}})");
    const auto ckpt = Checkpoint::Open(dir_.path());
    ASSERT_FALSE(ckpt.ok()) << "accepted shard name '" << file << "'";
    EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(ckpt.status()), HasSubstr("must be a file name inside the model directory"));
  }
}

TEST_F(ShardedCheckpointTest, MalformedIndexesAreRejected) {
  const std::pair<const char*, const char*> cases[] = {
      {"{not json", "invalid JSON"},
      {"[]", "invalid JSON"},
      {R"({"metadata":{}})", "field 'weight_map' missing or not an object"},
      {R"({"weight_map":[]})", "field 'weight_map' missing or not an object"},
      {R"({"weight_map":{}})", "lists no tensors"},
      {R"({"weight_map":{"first.a":7}})", "must be a file name"},
  };
  for (const auto& [index, what] : cases) {
    WriteTextFile(dir_.Child("model.safetensors.index.json"), index);
    const auto ckpt = Checkpoint::Open(dir_.path());
    ASSERT_FALSE(ckpt.ok()) << index;
    EXPECT_THAT(Message(ckpt.status()), HasSubstr(what)) << index;
    EXPECT_THAT(Message(ckpt.status()), HasSubstr("model.safetensors.index.json")) << index;
  }
}

// Records what is read and mapped, and fails to map the second shard as a bad disk would.
class RecordingEnv : public EnvWrapper {
 public:
  RecordingEnv() : EnvWrapper(Env::Default()) {}
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override {
    read.push_back(fs::path(path).filename().string());
    return EnvWrapper::ReadFileToString(path);
  }
  absl::StatusOr<std::unique_ptr<MappedFile>> MapFile(const std::string& path) override {
    read.push_back(fs::path(path).filename().string());
    if (path.ends_with("-00002-of-00002.safetensors")) return ErrnoStatus(path, "cannot open", EIO);
    return EnvWrapper::MapFile(path);
  }
  std::vector<std::string> read;
};

TEST_F(ShardedCheckpointTest, ReadsEveryFileThroughTheEnvItIsGiven) {
  RecordingEnv env;
  auto ckpt = Checkpoint::Open(dir_.path(), &env);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT(env.read, ElementsAre("config.json", "model.safetensors.index.json"));
  EXPECT_TRUE((*ckpt)->ReadFloat("first.a").ok());
  const auto second = (*ckpt)->ReadFloat("second.c");
  EXPECT_EQ(second.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(Message(second.status()), HasSubstr(dir_.Child("model-00002-of-00002.safetensors") +
                                                  ": cannot open: Input/output error"));
  EXPECT_THAT(env.read, ElementsAre("config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                    "model-00002-of-00002.safetensors"));
}

TEST(CheckpointDirectoryTest, PytorchBinOnlyIsRefusedWithAConversionHint) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("config.json"), kSmallLlamaConfig);
  WriteTextFile(dir.Child("pytorch_model.bin"), "PK\x03\x04 not really a zip");
  const auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("pickle"));                             // why
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("save_pretrained"));                    // how
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("safe_serialization=True"));
}

TEST(CheckpointDirectoryTest, MissingConfigIsNotFound) {
  ScopedTempDir dir;
  ASSERT_TRUE(WriteShardedSafetensors(dir.path(), {}).ok());
  const auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("config.json"));
}

TEST(CheckpointDirectoryTest, NoWeightsAndNoDirectoryAreNotFound) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("config.json"), kSmallLlamaConfig);
  const auto empty = Checkpoint::Open(dir.path());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(empty.status()), HasSubstr("no model.safetensors or model.safetensors.index.json"));
  const auto missing = Checkpoint::Open(dir.Child("absent"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(missing.status()), HasSubstr("not a directory"));
}

TEST(CheckpointDirectoryTest, CorruptSingleFileIsReportedAtOpenWithItsPath) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("config.json"), kSmallLlamaConfig);
  WriteTextFile(dir.Child("model.safetensors"), std::string("\x02\0\0\0\0\0\0\0{}", 10) + "junk");
  const auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("model.safetensors: safetensors header: 4 trailing bytes"));
}

}  // namespace
}  // namespace qshard
