// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then the tensor bytes. The header is validated
// completely before any tensor is handed out, so a malformed or hostile file yields a
// clear error naming the violation, never a crash.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/dtype.h"
#include "core/env.h"
#include "core/tensor.h"

namespace qshard {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data section
  uint64_t end = 0;
  int64_t num_elements() const { return Tensor::NumElements(shape); }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // absolute offset of the data section in the file
};

// Largest header accepted (the reference implementation uses the same 100 MB cap).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Parses and validates a header given the first bytes of a file and the file's full size.
// `file_prefix` must hold at least the 8 length bytes and the header itself.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::Span<const uint8_t> file_prefix,
                                                         uint64_t file_size);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path, Env* env = Env::Default());

  const std::string& path() const { return file_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  const TensorInfo* Find(std::string_view name) const;
  // Raw bytes of a tensor, as stored.
  absl::Span<const uint8_t> Bytes(const TensorInfo& info) const;
  // The tensor converted to float32 (any dtype).
  absl::StatusOr<Tensor> ReadFloat(std::string_view name) const;

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header);
  std::unique_ptr<MappedFile> file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace qshard
