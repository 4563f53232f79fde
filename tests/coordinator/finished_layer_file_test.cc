// The kept layer files of FinishedLayerDir: one CRC-checked record per group (no message holds
// a whole layer), read back group by group; a file cut short, damaged, or in the older format
// (one LayerSolutions message) is DATA_LOSS naming the file and ends the kept run there; a
// failed write keeps nothing. (The resume tests are in finished_layer_dir_test.cc.)
#include <fstream>

#include "coordinator/finished_layer_dir.h"
#include "gtest/gtest.h"
#include "remote/record_file.h"
#include "remote/wire.h"
#include "tests/core/fault_injection_env.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using testing::ReadFileBytes;

// Three groups of one layer, each with a distinct report and a small quantized linear.
std::vector<GroupSolution> SomeLayer() {
  std::vector<GroupSolution> layer(3);
  for (int g = 0; g < 3; ++g) {
    layer[g].reports.push_back({"linear" + std::to_string(g), 0.25 * g, 1.0 + g, 0.01, g});
    QuantizedWeight linear;
    linear.bits = 4;
    linear.rows = 2;
    linear.cols = 5 + g;
    linear.codes.assign(linear.rows * linear.cols, g + 1);
    linear.scales = Tensor({1, 2}, {0.5f, 0.25f});
    linear.zeros = {8, 7};
    linear.g_idx.assign(linear.cols, 0);
    layer[g].linears.emplace("linear" + std::to_string(g), std::move(linear));
  }
  return layer;
}

void Overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(FinishedLayerFileTest, ALayerIsOneRecordPerGroupAndReadsBack) {
  testing::ScopedTempDir dir;
  FinishedLayerDir kept(dir.Child("kept"));
  ASSERT_TRUE(kept.Save(0, SomeLayer()).ok());
  auto file = RecordFileReader::Open(dir.Child("kept/layer-00000.pb"));
  ASSERT_TRUE(file.ok()) << file.status();
  int records = 0;
  for (auto record = (*file)->Next(); record.ok() && *record; record = (*file)->Next()) {
    v1::GroupSolutionData data;
    ASSERT_TRUE(data.ParseFromArray((*record)->data(), static_cast<int>((*record)->size())));
    EXPECT_EQ(data.reports(0).name(), "linear" + std::to_string(records));
    ++records;
  }
  EXPECT_EQ(records, 3);

  auto back = kept.Load(0);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  for (int g = 0; g < 3; ++g) {
    const std::string name = "linear" + std::to_string(g);
    EXPECT_EQ((*back)[g].reports.at(0).name, name);
    EXPECT_EQ((*back)[g].reports.at(0).damp_retries, g);
    EXPECT_EQ((*back)[g].linears.at(name).codes, SomeLayer()[g].linears.at(name).codes);
    EXPECT_EQ((*back)[g].linears.at(name).cols, 5 + g);
  }
}

// Layers 0-2 kept, layer 1's file then replaced by `bytes`: Load(1) is DATA_LOSS naming the
// file (and `expected` in its message); the kept run ends after layer 0.
void ExpectLayerOneRefused(const std::function<std::string(const std::string& whole)>& damage,
                           const std::string& expected) {
  testing::ScopedTempDir dir;
  FinishedLayerDir kept(dir.Child("kept"));
  for (int layer = 0; layer < 3; ++layer) ASSERT_TRUE(kept.Save(layer, SomeLayer()).ok());
  const std::string path = dir.Child("kept/layer-00001.pb");
  Overwrite(path, damage(ReadFileBytes(path)));
  const absl::Status status = kept.Load(1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
  EXPECT_NE(status.message().find(expected), std::string::npos) << status;
  EXPECT_EQ(kept.CountKept().value_or(-1), 1);
  EXPECT_TRUE(kept.Load(2).ok());  // the others are intact; the runner solves 1 and 2 again
}

TEST(FinishedLayerFileTest, ATruncatedFileEndsTheKeptRun) {
  ExpectLayerOneRefused([](const std::string& whole) { return whole.substr(0, whole.size() - 21); }, "truncated");
  ExpectLayerOneRefused([](const std::string& whole) { return whole.substr(0, whole.size() / 2); }, "truncated");
}

TEST(FinishedLayerFileTest, ACorruptGroupEndsTheKeptRun) {
  ExpectLayerOneRefused(
      [](const std::string& whole) {
        std::string damaged = whole;
        damaged[whole.size() / 2] = static_cast<char>(damaged[whole.size() / 2] ^ 0x10);
        return damaged;
      },
      "CRC-32 mismatch");
}

TEST(FinishedLayerFileTest, AnOlderSingleMessageFileIsRefused) {
  // What earlier versions wrote: proto LayerSolutions { repeated GroupSolutionData groups = 1; }.
  ExpectLayerOneRefused(
      [](const std::string&) {
        std::string old;
        for (const GroupSolution& solution : SomeLayer()) {
          v1::GroupSolutionData data;
          wire::ToProto(solution, data);
          const std::string bytes = data.SerializeAsString();
          old += '\x0a';
          old += static_cast<char>(bytes.size());  // each under 128 bytes: a one-byte varint
          old += bytes;
        }
        return old;
      },
      "not a record file of this version");
}

TEST(FinishedLayerFileTest, AFailedWriteKeepsNothing) {
  testing::ScopedTempDir dir;
  testing::FaultInjectionEnv env;
  FinishedLayerDir kept(dir.Child("kept"), &env);
  ASSERT_TRUE(kept.Save(0, SomeLayer()).ok());
  env.FailAppendNumber(env.appends() + 4);  // inside layer 1's second group
  EXPECT_FALSE(kept.Save(1, SomeLayer()).ok());
  EXPECT_EQ(kept.CountKept().value_or(-1), 1);
  EXPECT_FALSE(std::filesystem::exists(dir.Child("kept/layer-00001.pb")));
}

}  // namespace
}  // namespace qshard
