// Writers for safetensors files and Hugging Face checkpoint directories. They stream: every
// tensor is declared up front (the header holds all offsets), then its bytes are appended in
// declaration order, so memory stays at one chunk however large the model. The bytes depend
// only on the declarations and the data (sorted header keys, no timestamps), and every file
// appears atomically (see core/atomic_file.h); a sharded directory changes all at once. Every
// file is written through an Env (core/env.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace qshard {

// A tensor to be written: its name, storage dtype and shape.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  int64_t num_elements() const { return Tensor::NumElements(shape); }
  uint64_t num_bytes() const { return static_cast<uint64_t>(num_elements()) * DTypeSize(dtype); }
};

// Views an array of plain values (packed int32 words, pre-encoded fp16...) as AppendRaw's bytes.
template <typename T>
absl::Span<const uint8_t> AsBytes(absl::Span<const T> values) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(values.data()), values.size() * sizeof(T));
}

// Streams one safetensors file.
class SafetensorsWriter {
 public:
  // Checks the declarations (non-empty unique names other than "__metadata__", valid UTF-8,
  // non-negative dims) and writes the header to `path.tmp`. Tensor data is laid out in
  // declaration order; header keys are sorted. Nothing appears at `path` until Finish.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorSpec> tensors,
      const std::map<std::string, std::string>& metadata = {}, Env* env = Env::Default());

  // Appends the next elements of tensor `name`, which must be the first declared tensor that
  // is not yet complete (a tensor may be appended in several pieces). AppendFloat encodes to
  // the declared floating dtype (F32, F16, BF16, F64; round to nearest even); AppendRaw takes
  // bytes already in the declared dtype, for any dtype (e.g. I32 packed weights).
  absl::Status AppendFloat(std::string_view name, absl::Span<const float> values);
  absl::Status AppendRaw(std::string_view name, absl::Span<const uint8_t> bytes);
  // Checks that every tensor is complete, then fsyncs and renames the file into place.
  absl::Status Finish();
  // As Finish, but leaves the renaming to `staged` (with the files that must appear with it).
  absl::Status FinishInto(StagedFiles& staged);

  const std::string& path() const { return path_; }

 private:
  SafetensorsWriter(std::unique_ptr<AtomicFileWriter> file, std::vector<TensorSpec> tensors);
  absl::Status CheckComplete() const;
  // The tensor `name` if it is the one to append to now, else why not.
  absl::StatusOr<const TensorSpec*> Expect(std::string_view name) const;
  absl::Status Declared(std::string_view name) const;
  absl::Status CheckFits(const TensorSpec& tensor, uint64_t bytes) const;
  void SkipCompleteTensors();

  std::string path_;
  std::unique_ptr<AtomicFileWriter> file_;  // null once finished
  std::vector<TensorSpec> tensors_;
  size_t current_ = 0;           // first tensor not yet complete
  uint64_t current_written_ = 0;  // bytes of it already appended
  std::vector<uint8_t> scratch_;  // float conversion buffer
};

struct ShardingOptions {
  // Most tensor bytes per shard, as save_pretrained's max_shard_size counts them; a tensor
  // larger than this gets a shard of its own.
  uint64_t max_shard_bytes = uint64_t{2} << 30;
  // Written into every file's __metadata__; transformers refuses safetensors without "format".
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
};

// Streams the weights of a Hugging Face model directory: a single `model.safetensors` when the
// tensors fit in one shard, otherwise `model-00001-of-0000N.safetensors`... (consecutive
// tensors in declaration order, split like save_pretrained) plus `model.safetensors.index.json`
// ({"metadata": {"total_size"}, "weight_map"}). Creates `dir` if needed. Finished shards wait
// under their temporary names: nothing in `dir` changes until Finish renames the shards, the
// index and the added files together (see StagedFiles), so a failed rewrite leaves a previous
// checkpoint in `dir` as it was. Then weights files of another layout left in `dir` (an old
// index, model.safetensors or stale shards, and temporaries of a crashed writer) are removed so
// loaders cannot pick them up.
class ShardedSafetensorsWriter {
 public:
  static absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> Create(
      const std::string& dir, std::vector<TensorSpec> tensors, ShardingOptions options = {},
      Env* env = Env::Default());

  // Same contract as SafetensorsWriter's, across the whole declaration list.
  absl::Status AppendFloat(std::string_view name, absl::Span<const float> values);
  absl::Status AppendRaw(std::string_view name, absl::Span<const uint8_t> bytes);
  // Another file of the directory (a config, a report; `name` relative to it), written at
  // Finish after the index and put in place with the weights.
  void AddFile(std::string name, std::string content);
  absl::Status Finish();

  // File names (relative to the directory), in order.
  const std::vector<std::string>& shard_files() const { return shard_files_; }

 private:
  ShardedSafetensorsWriter(std::string dir, ShardingOptions options, Env* env)
      : dir_(std::move(dir)), options_(std::move(options)), env_(env), staged_(env) {}
  // The open shard writer for tensor `name`, finishing and opening shards as the order advances.
  absl::StatusOr<SafetensorsWriter*> WriterFor(std::string_view name);
  absl::Status OpenThrough(size_t shard);
  absl::Status FinishOpenShard();
  absl::Status WriteIndex();
  absl::Status RemoveStaleWeights() const;

  std::string dir_;
  ShardingOptions options_;
  Env* env_;
  StagedFiles staged_;  // finished shards, then the index and added files
  std::vector<std::pair<std::string, std::string>> added_files_;  // name, content
  std::vector<std::vector<TensorSpec>> shards_;
  std::vector<std::string> shard_files_;
  std::map<std::string, size_t, std::less<>> shard_of_;
  std::unique_ptr<SafetensorsWriter> open_;  // shard next_shard_ - 1 while it is being written
  size_t next_shard_ = 0;                    // shards before it have been opened
};

// A tensor already encoded in its storage dtype, for writing small files in one call.
struct EncodedTensor {
  TensorSpec spec;
  std::vector<uint8_t> bytes;
};
// Encodes float32 values as a floating dtype (F32, F16, BF16, F64).
absl::StatusOr<EncodedTensor> EncodeFloatTensor(std::string name, const Tensor& tensor, DType dtype);
// Stores int32 values as I32; `values` must match `shape`.
absl::StatusOr<EncodedTensor> EncodeInt32Tensor(std::string name, std::vector<int64_t> shape,
                                                absl::Span<const int32_t> values);

absl::Status WriteSafetensors(const std::string& path, absl::Span<const EncodedTensor> tensors,
                              const std::map<std::string, std::string>& metadata = {},
                              Env* env = Env::Default());
absl::Status WriteShardedSafetensors(const std::string& dir, absl::Span<const EncodedTensor> tensors,
                                     ShardingOptions options = {}, Env* env = Env::Default());

// File names of the sharded layout: "model-00002-of-00005.safetensors" for (1, 5).
std::string ShardFileName(size_t index, size_t count);
inline constexpr char kSingleWeightsFile[] = "model.safetensors";
inline constexpr char kWeightsIndexFile[] = "model.safetensors.index.json";

}  // namespace qshard
