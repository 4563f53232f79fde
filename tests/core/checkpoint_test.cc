#include "core/checkpoint.h"

#include "gtest/gtest.h"

namespace qshard {
namespace {

constexpr char kTinyStories[] = "../shared/data/tinystories-656k";

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

}  // namespace
}  // namespace qshard
