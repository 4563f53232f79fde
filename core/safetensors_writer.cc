#include "core/safetensors_writer.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

using nlohmann::json;

// Floats are converted to the stored dtype in pieces of this many elements.
constexpr size_t kConvertChunk = size_t{1} << 16;

absl::Status CheckSpecs(const std::string& where, const std::vector<TensorSpec>& tensors) {
  std::set<std::string_view> names;
  for (const TensorSpec& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      return absl::InvalidArgumentError(absl::StrCat(where, ": invalid tensor name '", t.name, "'"));
    if (!names.insert(t.name).second)
      return absl::InvalidArgumentError(absl::StrCat(where, ": tensor '", t.name, "' declared twice"));
    uint64_t bytes = DTypeSize(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0)
        return absl::InvalidArgumentError(absl::StrCat(where, ": tensor '", t.name, "' has a negative dimension"));
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) || bytes > uint64_t{INT64_MAX})
        return absl::InvalidArgumentError(absl::StrCat(where, ": tensor '", t.name, "' is too large"));
    }
  }
  return absl::OkStatus();
}

// The header as the reference writer lays it out: compact JSON (keys sorted by nlohmann's
// std::map), padded with spaces so the data section starts 8-byte aligned.
absl::StatusOr<std::string> EncodeHeader(const std::string& path, const std::vector<TensorSpec>& tensors,
                                         const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    const uint64_t end = offset + t.num_bytes();
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::type_error& e) {  // names or metadata that are not valid UTF-8
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot encode the header: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

std::string LittleEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

bool IsShardFileName(std::string_view n) {
  // model-DDDDD-of-DDDDD.safetensors
  if (n.size() != 32 || n.substr(0, 6) != "model-" || n.substr(11, 4) != "-of-" || n.substr(20) != ".safetensors")
    return false;
  const auto digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return digits(n.substr(6, 5)) && digits(n.substr(15, 5));
}

template <typename Writer>
absl::Status AppendAll(Writer& writer, absl::Span<const EncodedTensor> tensors) {
  for (const EncodedTensor& t : tensors) QSHARD_RETURN_IF_ERROR(writer.AppendRaw(t.spec.name, t.bytes));
  return writer.Finish();
}

std::vector<TensorSpec> SpecsOf(absl::Span<const EncodedTensor> tensors) {
  std::vector<TensorSpec> specs;
  for (const EncodedTensor& t : tensors) specs.push_back(t.spec);
  return specs;
}

}  // namespace

std::string ShardFileName(size_t index, size_t count) {
  return absl::StrFormat("model-%05d-of-%05d.safetensors", index + 1, count);
}

// ---- SafetensorsWriter ----

SafetensorsWriter::SafetensorsWriter(std::unique_ptr<AtomicFileWriter> file, std::vector<TensorSpec> tensors)
    : path_(file->path()), file_(std::move(file)), tensors_(std::move(tensors)) {
  SkipCompleteTensors();
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorSpec> tensors, const std::map<std::string, std::string>& metadata,
    Env* env) {
  QSHARD_RETURN_IF_ERROR(CheckSpecs(path, tensors));
  QSHARD_ASSIGN_OR_RETURN(const std::string header, EncodeHeader(path, tensors, metadata));
  QSHARD_ASSIGN_OR_RETURN(auto file, AtomicFileWriter::Create(path, env));
  QSHARD_RETURN_IF_ERROR(file->Append(LittleEndian64(header.size())));
  QSHARD_RETURN_IF_ERROR(file->Append(header));
  return std::unique_ptr<SafetensorsWriter>(new SafetensorsWriter(std::move(file), std::move(tensors)));
}

void SafetensorsWriter::SkipCompleteTensors() {
  while (current_ < tensors_.size() && current_written_ == tensors_[current_].num_bytes()) {
    ++current_;
    current_written_ = 0;
  }
}

absl::StatusOr<const TensorSpec*> SafetensorsWriter::Expect(std::string_view name) const {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": file already finished"));
  if (current_ < tensors_.size() && name == tensors_[current_].name) return &tensors_[current_];
  QSHARD_RETURN_IF_ERROR(Declared(name));
  if (current_ == tensors_.size())
    return absl::FailedPreconditionError(
        absl::StrCat(path(), ": tensor '", std::string(name), "' appended after every tensor was complete"));
  return absl::FailedPreconditionError(absl::StrCat(path(), ": tensor '", std::string(name),
                                                    "' appended out of order; expected '", tensors_[current_].name, "'"));
}

absl::Status SafetensorsWriter::CheckFits(const TensorSpec& t, uint64_t bytes) const {
  if (bytes <= t.num_bytes() - current_written_) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(path(), ": tensor '", t.name, "' has ", t.num_bytes(),
                                                 " bytes declared, ", current_written_ + bytes, " appended"));
}

absl::Status SafetensorsWriter::AppendRaw(std::string_view name, absl::Span<const uint8_t> bytes) {
  if (bytes.empty()) return Declared(name);
  QSHARD_ASSIGN_OR_RETURN(const TensorSpec* t, Expect(name));
  QSHARD_RETURN_IF_ERROR(CheckFits(*t, bytes.size()));
  QSHARD_RETURN_IF_ERROR(file_->Append(bytes));
  current_written_ += bytes.size();
  SkipCompleteTensors();
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::AppendFloat(std::string_view name, absl::Span<const float> values) {
  if (values.empty()) return Declared(name);
  QSHARD_ASSIGN_OR_RETURN(const TensorSpec* t, Expect(name));
  if (!IsFloating(t->dtype))
    return absl::InvalidArgumentError(absl::StrCat(path(), ": tensor '", t->name, "' is ",
                                                   std::string(DTypeName(t->dtype)),
                                                   "; floats can only be stored as F32, F16, BF16 or F64"));
  const size_t element_size = DTypeSize(t->dtype);
  const uint64_t bytes = values.size() * element_size;
  QSHARD_RETURN_IF_ERROR(CheckFits(*t, bytes));
  while (!values.empty()) {
    const size_t n = std::min(values.size(), kConvertChunk);
    scratch_.resize(n * element_size);
    ConvertFromFloat(t->dtype, values.data(), n, scratch_.data());
    QSHARD_RETURN_IF_ERROR(file_->Append(scratch_));
    values.remove_prefix(n);
  }
  current_written_ += bytes;
  SkipCompleteTensors();
  return absl::OkStatus();
}

// Appending nothing is a no-op (empty tensors need no data), but only for a declared name.
absl::Status SafetensorsWriter::Declared(std::string_view name) const {
  for (const TensorSpec& t : tensors_)
    if (t.name == name) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(path(), ": tensor '", std::string(name), "' was not declared"));
}

absl::Status SafetensorsWriter::CheckComplete() const {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": file already finished"));
  if (current_ < tensors_.size())
    return absl::FailedPreconditionError(absl::StrCat(path(), ": tensor '", tensors_[current_].name, "' has ",
                                                      current_written_, " of its ", tensors_[current_].num_bytes(),
                                                      " bytes; the file is incomplete"));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  QSHARD_RETURN_IF_ERROR(CheckComplete());
  return file_->Commit();
}

absl::Status SafetensorsWriter::FinishInto(StagedFiles& staged) {
  QSHARD_RETURN_IF_ERROR(CheckComplete());
  return staged.Add(std::move(file_));
}

// ---- ShardedSafetensorsWriter ----

absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> ShardedSafetensorsWriter::Create(
    const std::string& dir, std::vector<TensorSpec> tensors, ShardingOptions options, Env* env) {
  QSHARD_RETURN_IF_ERROR(CheckSpecs(dir, tensors));
  if (options.max_shard_bytes == 0)
    return absl::InvalidArgumentError(absl::StrCat(dir, ": max shard size must be positive"));
  QSHARD_RETURN_IF_ERROR(env->CreateDirs(dir));

  std::unique_ptr<ShardedSafetensorsWriter> writer(new ShardedSafetensorsWriter(dir, std::move(options), env));
  uint64_t shard_bytes = 0;
  for (TensorSpec& t : tensors) {
    const uint64_t bytes = t.num_bytes();
    if (writer->shards_.empty() || (shard_bytes > 0 && shard_bytes + bytes > writer->options_.max_shard_bytes)) {
      writer->shards_.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += bytes;
    writer->shard_of_[t.name] = writer->shards_.size() - 1;
    writer->shards_.back().push_back(std::move(t));
  }
  if (writer->shards_.empty()) writer->shards_.emplace_back();  // an empty checkpoint is one empty file
  const size_t count = writer->shards_.size();
  for (size_t i = 0; i < count; ++i)
    writer->shard_files_.push_back(count == 1 ? kSingleWeightsFile : ShardFileName(i, count));
  return writer;
}

absl::Status ShardedSafetensorsWriter::FinishOpenShard() {
  if (open_ == nullptr) return absl::OkStatus();
  const absl::Status status = open_->FinishInto(staged_);
  open_.reset();
  return status;
}

absl::Status ShardedSafetensorsWriter::OpenThrough(size_t shard) {
  while (next_shard_ <= shard) {
    QSHARD_RETURN_IF_ERROR(FinishOpenShard());
    QSHARD_ASSIGN_OR_RETURN(open_, SafetensorsWriter::Create(dir_ + "/" + shard_files_[next_shard_],
                                                              shards_[next_shard_], options_.metadata, env_));
    ++next_shard_;
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsWriter*> ShardedSafetensorsWriter::WriterFor(std::string_view name) {
  const auto it = shard_of_.find(name);
  if (it == shard_of_.end())
    return absl::InvalidArgumentError(absl::StrCat(dir_, ": tensor '", std::string(name), "' was not declared"));
  const size_t shard = it->second;
  if (shard + 1 < next_shard_ || (shard + 1 == next_shard_ && open_ == nullptr))
    return absl::FailedPreconditionError(absl::StrCat(dir_, ": tensor '", std::string(name), "' appended after its shard ",
                                                      shard_files_[shard], " was finished"));
  QSHARD_RETURN_IF_ERROR(OpenThrough(shard));
  return open_.get();
}

absl::Status ShardedSafetensorsWriter::AppendRaw(std::string_view name, absl::Span<const uint8_t> bytes) {
  QSHARD_ASSIGN_OR_RETURN(SafetensorsWriter * writer, WriterFor(name));
  return writer->AppendRaw(name, bytes);
}

absl::Status ShardedSafetensorsWriter::AppendFloat(std::string_view name, absl::Span<const float> values) {
  QSHARD_ASSIGN_OR_RETURN(SafetensorsWriter * writer, WriterFor(name));
  return writer->AppendFloat(name, values);
}

void ShardedSafetensorsWriter::AddFile(std::string name, std::string content) {
  added_files_.emplace_back(std::move(name), std::move(content));
}

absl::Status ShardedSafetensorsWriter::Finish() {
  // Trailing shards that hold only empty tensors were never opened by an append.
  QSHARD_RETURN_IF_ERROR(OpenThrough(shards_.size() - 1));
  QSHARD_RETURN_IF_ERROR(FinishOpenShard());
  if (shards_.size() > 1) QSHARD_RETURN_IF_ERROR(WriteIndex());
  for (const auto& [name, content] : added_files_) QSHARD_RETURN_IF_ERROR(staged_.Write(dir_ + "/" + name, content));
  QSHARD_RETURN_IF_ERROR(staged_.Commit());
  return RemoveStaleWeights();
}

absl::Status ShardedSafetensorsWriter::WriteIndex() {
  json weight_map = json::object();
  uint64_t total_size = 0;
  for (size_t s = 0; s < shards_.size(); ++s) {
    for (const TensorSpec& t : shards_[s]) {
      weight_map[t.name] = shard_files_[s];
      total_size += t.num_bytes();
    }
  }
  const json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  return staged_.Write(dir_ + "/" + kWeightsIndexFile, index.dump(2) + "\n");
}

absl::Status ShardedSafetensorsWriter::RemoveStaleWeights() const {
  const std::set<std::string, std::less<>> current(shard_files_.begin(), shard_files_.end());
  const bool sharded = shards_.size() > 1;
  const auto is_weights = [](std::string_view name) {
    return IsShardFileName(name) || name == kSingleWeightsFile || name == kWeightsIndexFile;
  };
  QSHARD_ASSIGN_OR_RETURN(const std::vector<std::string> names, env_->GetChildren(dir_));
  for (const std::string& name : names) {
    const std::string_view n(name);
    const bool temporary = n.ends_with(".tmp") && is_weights(n.substr(0, n.size() - 4));
    const bool stale = current.count(name) == 0 && is_weights(name) && (name != kWeightsIndexFile || !sharded);
    if (temporary || stale)
      QSHARD_RETURN_IF_ERROR(WithContext(env_->RemoveFile(dir_ + "/" + name), "removing a stale weights file"));
  }
  return absl::OkStatus();
}

// ---- one-call helpers ----

absl::StatusOr<EncodedTensor> EncodeFloatTensor(std::string name, const Tensor& tensor, DType dtype) {
  if (!IsFloating(dtype))
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': floats cannot be stored as ",
                                                   std::string(DTypeName(dtype))));
  EncodedTensor out{{std::move(name), dtype, tensor.shape()}, {}};
  out.bytes.resize(static_cast<size_t>(tensor.size()) * DTypeSize(dtype));
  ConvertFromFloat(dtype, tensor.data(), tensor.size(), out.bytes.data());
  return out;
}

absl::StatusOr<EncodedTensor> EncodeInt32Tensor(std::string name, std::vector<int64_t> shape,
                                                absl::Span<const int32_t> values) {
  if (Tensor::NumElements(shape) != static_cast<int64_t>(values.size()))
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", values.size(),
                                                   " values do not match its shape"));
  const absl::Span<const uint8_t> bytes = AsBytes(values);
  return EncodedTensor{{std::move(name), DType::kI32, std::move(shape)}, {bytes.begin(), bytes.end()}};
}

absl::Status WriteSafetensors(const std::string& path, absl::Span<const EncodedTensor> tensors,
                              const std::map<std::string, std::string>& metadata, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(path, SpecsOf(tensors), metadata, env));
  return AppendAll(*writer, tensors);
}

absl::Status WriteShardedSafetensors(const std::string& dir, absl::Span<const EncodedTensor> tensors,
                                     ShardingOptions options, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto writer,
                          ShardedSafetensorsWriter::Create(dir, SpecsOf(tensors), std::move(options), env));
  return AppendAll(*writer, tensors);
}

}  // namespace qshard
