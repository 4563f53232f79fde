// The wire form of statistics and solutions reads back bit for bit, and chunked messages
// reassemble only when whole and undamaged.
#include "remote/wire.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "tests/remote/random_statistics.h"

namespace qshard {
namespace {

using testing::RandomSum;

TEST(WireTest, StatisticsWithAttentionRoundTripExactly) {
  std::mt19937 rng(1);
  const GroupStatistics statistics = testing::RandomAttentionStatistics(13, 3, rng);
  const AttentionStats& attention = *statistics.attention;
  v1::GroupStatisticsData data;
  wire::ToProto(statistics, data);
  auto back = wire::FromProto(data);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->inputs.sum, statistics.inputs.sum);
  EXPECT_EQ(back->inputs.tokens, 17);
  EXPECT_EQ(back->inputs.abs_max, statistics.inputs.abs_max);
  ASSERT_TRUE(back->attention.has_value());
  EXPECT_EQ(back->attention->values[1].sum, attention.values[1].sum);
  EXPECT_EQ(back->attention->keys[0].sum, attention.keys[0].sum);
  EXPECT_EQ(back->attention->seq, 9);

  GroupStatistics plain;
  plain.inputs = RandomSum(5, rng);
  v1::GroupStatisticsData plain_data;
  wire::ToProto(plain, plain_data);
  EXPECT_FALSE(wire::FromProto(plain_data)->attention.has_value());

  data.mutable_inputs()->mutable_sum_f64()->pop_back();  // truncated
  EXPECT_FALSE(wire::FromProto(data).ok());
}

TEST(WireTest, SolutionsRoundTripExactly) {
  std::mt19937 rng(2);
  QuantizedWeight q;
  q.bits = 3;
  q.rows = 5;
  q.cols = 7;
  for (int i = 0; i < 35; ++i) q.codes.push_back(static_cast<int32_t>(rng() % 8));
  q.scales = Tensor({1, 5}, {0.5f, 0.25f, 1.5f, 2.0f, 0.125f});
  q.zeros = {1, 2, 3, 4, 5};
  q.g_idx.assign(7, 0);
  q.input_channel = {0, 0, 0, 1, 2, 3, 3};  // FlattenQuant: inputs 0 and 3 split
  q.act_bits = 4;
  q.act_scale = 0.375f;
  ASSERT_TRUE(q.Validate().ok());
  GroupSolution solution;
  solution.linears["fc1"] = q;
  solution.rewrites.push_back({TensorRewrite::Target::kNorm, "final_layer_norm.weight", Tensor({3}, {1.f, -2.f, 3.5f})});
  solution.reports.push_back({"fc1", 0.25, 1.5, 0.01, 1});
  v1::GroupSolutionData data;
  wire::ToProto(solution, data);
  auto back = wire::FromProto(data);
  ASSERT_TRUE(back.ok()) << back.status();
  const QuantizedWeight& r = back->linears.at("fc1");
  EXPECT_EQ(r.codes, q.codes);
  EXPECT_EQ(r.scales.values(), q.scales.values());
  EXPECT_EQ(r.zeros, q.zeros);
  EXPECT_EQ(r.g_idx, q.g_idx);
  EXPECT_EQ(r.input_channel, q.input_channel);
  EXPECT_EQ(r.act_bits, 4);
  EXPECT_EQ(r.act_scale, 0.375f);
  ASSERT_EQ(back->rewrites.size(), 1u);
  EXPECT_EQ(back->rewrites[0].target, TensorRewrite::Target::kNorm);
  EXPECT_EQ(back->rewrites[0].value.values(), solution.rewrites[0].value.values());
  EXPECT_EQ(back->reports[0].damp_retries, 1);

  (*data.mutable_linears())["fc1"].set_bits(9);  // hostile
  EXPECT_FALSE(wire::FromProto(data).ok());
}

// A two-step solve's shared part (Z-Fold's and aespa's ζ and grids) goes to other workers.
TEST(WireTest, SharedGroupPartsRoundTripExactly) {
  SharedGroupPart shared;
  shared.rewrites.push_back({TensorRewrite::Target::kNorm, "input_layernorm.weight", Tensor({3}, {0.5f, -1.f, 7.25f})});
  shared.column_scale = {1.0f, 0.75f, 1.0f / 3.0f};
  shared.grids["self_attn.q_proj"] = {Tensor({2, 3}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}), {0, 1, 2, 3, 4, 5}};
  shared.grids["self_attn.v_proj"] = {Tensor({1, 2}, {1e-7f, 3e5f}), {7, -1}};
  v1::SharedGroupPartData data;
  wire::ToProto(shared, data);
  auto back = wire::FromProto(data);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->rewrites.size(), 1u);
  EXPECT_EQ(back->rewrites[0].name, "input_layernorm.weight");
  EXPECT_EQ(back->rewrites[0].value.values(), shared.rewrites[0].value.values());
  EXPECT_EQ(back->column_scale, shared.column_scale);
  ASSERT_EQ(back->grids.size(), 2u);
  for (const auto& [name, grids] : shared.grids) {
    EXPECT_EQ(back->grids.at(name).scales.shape(), grids.scales.shape()) << name;
    EXPECT_EQ(back->grids.at(name).scales.values(), grids.scales.values()) << name;
    EXPECT_EQ(back->grids.at(name).zeros, grids.zeros) << name;
  }

  v1::SharedGroupPartData no_zeta;  // ζ = 1: nothing folded
  EXPECT_TRUE(wire::FromProto(no_zeta).ok() && wire::FromProto(no_zeta)->column_scale.empty());
  (*data.mutable_grids())["self_attn.v_proj"].mutable_zeros_i32()->pop_back();  // truncated
  EXPECT_FALSE(wire::FromProto(data).ok());
  data.mutable_column_scale_f32()->pop_back();
  EXPECT_FALSE(wire::FromProto(data).ok());
}

// The per-head step of a three-step solve: its ranges out, its parts (both roundings) back.
TEST(WireTest, HeadRangesAndPartsRoundTripExactly) {
  v1::HeadRangeData range_data;
  wire::ToProto(HeadRange{"self_attn.k_proj", 3, 2}, range_data);
  const HeadRange range = wire::FromProto(range_data);
  EXPECT_EQ(range.linear, "self_attn.k_proj");
  EXPECT_EQ(range.first, 3);
  EXPECT_EQ(range.count, 2);

  HeadsPart part;
  part.linear = "self_attn.q_proj";
  part.first = 5;
  QuantizedWeight& w = part.weight;
  w.bits = 3;
  w.rows = 2;
  w.cols = 3;
  w.codes = {0, 7, 3, 1, 2, 6};
  w.scales = Tensor({1, 2}, {0.125f, 1e-7f});
  w.zeros = {4, 0};
  w.g_idx = {0, 0, 0};
  part.learned_codes = {1, 6, 3, 0, 2, 7};
  part.losses = {0.1, 1.0 / 3.0};
  part.learned_losses = {0.05, 2.0 / 7.0};
  part.error = 1e-300;
  part.learned_error = 5e-3;
  part.reference = 12.5;
  part.report = {"self_attn.q_proj", 0.0, 1.25, 0.02, 1};
  v1::HeadsPartData data;
  wire::ToProto(part, data);
  auto back = wire::FromProto(data);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->linear, part.linear);
  EXPECT_EQ(back->first, 5);
  EXPECT_EQ(back->weight.codes, w.codes);
  EXPECT_EQ(back->weight.scales.values(), w.scales.values());
  EXPECT_EQ(back->weight.zeros, w.zeros);
  EXPECT_EQ(back->learned_codes, part.learned_codes);
  EXPECT_EQ(back->losses, part.losses);
  EXPECT_EQ(back->learned_losses, part.learned_losses);
  EXPECT_EQ(back->error, part.error);
  EXPECT_EQ(back->learned_error, part.learned_error);
  EXPECT_EQ(back->reference, part.reference);
  EXPECT_EQ(back->report.seconds, 1.25);
  EXPECT_EQ(back->report.damp_retries, 1);

  data.mutable_learned_codes_u8()->pop_back();  // the learned codes must fit the rows
  EXPECT_FALSE(wire::FromProto(data).ok());
}

TEST(WireTest, ChunksReassembleAndDamageIsCaught) {
  v1::WorkerTaskResult result;
  result.set_message(std::string(10000, 'x'));
  const std::vector<v1::Chunk> chunks = wire::Cut(result, 42, 999).value();
  ASSERT_EQ(chunks.size(), 11u);
  wire::ChunkAssembler assembler;
  v1::WorkerTaskResult back;
  for (size_t i = 0; i < chunks.size(); ++i) {
    auto complete = assembler.Add(chunks[i], back);
    ASSERT_TRUE(complete.ok()) << complete.status();
    EXPECT_EQ(*complete, i + 1 == chunks.size());
  }
  EXPECT_EQ(back.message(), result.message());

  std::vector<v1::Chunk> damaged = chunks;
  damaged[3].mutable_data()->at(5) ^= 1;
  wire::ChunkAssembler again;
  absl::StatusOr<bool> last = false;
  for (const v1::Chunk& chunk : damaged) last = again.Add(chunk, back);
  EXPECT_EQ(last.status().code(), absl::StatusCode::kDataLoss);

  wire::ChunkAssembler mixed;
  ASSERT_TRUE(mixed.Add(chunks[0], back).ok());
  v1::Chunk other = chunks[1];
  other.set_message_id(43);
  EXPECT_EQ(mixed.Add(other, back).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace qshard
