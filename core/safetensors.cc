#include "core/safetensors.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

using nlohmann::json;

absl::Status HeaderError(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors header: ", std::string(what)));
}

absl::StatusOr<std::vector<int64_t>> ParseShape(const std::string& name, const json& shape) {
  if (!shape.is_array()) return HeaderError(absl::StrCat("tensor '", name, "': shape is not an array"));
  std::vector<int64_t> dims;
  for (const json& d : shape) {
    if (!d.is_number_integer())
      return HeaderError(absl::StrCat("tensor '", name, "': shape has a non-integer entry"));
    if (!d.is_number_unsigned())
      return HeaderError(absl::StrCat("tensor '", name, "': negative dimension in shape"));
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX))
      return HeaderError(absl::StrCat("tensor '", name, "': dimension overflows int64"));
    dims.push_back(static_cast<int64_t>(v));
  }
  return dims;
}

absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& name, const json& entry) {
  if (!entry.is_object()) return HeaderError(absl::StrCat("tensor '", name, "': entry is not an object"));
  TensorInfo info;
  info.name = name;
  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string())
    return HeaderError(absl::StrCat("tensor '", name, "': missing dtype"));
  const auto dtype = ParseDType(dtype_it->get<std::string>());
  if (!dtype)
    return HeaderError(absl::StrCat("tensor '", name, "': unknown dtype '", dtype_it->get<std::string>(), "'"));
  info.dtype = *dtype;
  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return HeaderError(absl::StrCat("tensor '", name, "': missing shape"));
  QSHARD_ASSIGN_OR_RETURN(info.shape, ParseShape(name, *shape_it));
  const auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
    return HeaderError(absl::StrCat("tensor '", name, "': data_offsets must be two non-negative integers"));
  info.begin = (*offsets_it)[0].get<uint64_t>();
  info.end = (*offsets_it)[1].get<uint64_t>();
  if (info.end < info.begin)
    return HeaderError(absl::StrCat("tensor '", name, "': data_offsets end before begin"));

  uint64_t elements = 1;
  for (int64_t d : info.shape)
    if (__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements))
      return HeaderError(absl::StrCat("tensor '", name, "': shape element count overflows"));
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements, static_cast<uint64_t>(DTypeSize(info.dtype)), &bytes) ||
      elements > static_cast<uint64_t>(INT64_MAX))
    return HeaderError(absl::StrCat("tensor '", name, "': byte size overflows"));
  if (info.end - info.begin != bytes)
    return HeaderError(absl::StrCat("tensor '", name, "': data_offsets span ", info.end - info.begin,
                                    " bytes but shape x dtype needs ", bytes));
  return info;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const json& metadata) {
  if (!metadata.is_object()) return HeaderError("__metadata__ is not an object");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) return HeaderError(absl::StrCat("__metadata__ '", key, "' is not a string"));
    out[key] = value.get<std::string>();
  }
  return out;
}

// Tensors must tile the data section exactly: no overlap, no gap, nothing after the last.
absl::Status CheckLayout(const std::vector<TensorInfo>& sorted, uint64_t data_size) {
  uint64_t expected_begin = 0;
  for (const TensorInfo& t : sorted) {
    if (t.begin < expected_begin) return HeaderError(absl::StrCat("tensor '", t.name, "' overlaps the previous tensor"));
    if (t.begin > expected_begin)
      return HeaderError(absl::StrCat("gap of ", t.begin - expected_begin, " bytes before tensor '", t.name, "'"));
    if (t.end > data_size)
      return HeaderError(absl::StrCat("tensor '", t.name, "' offsets [", t.begin, ",", t.end,
                                      ") beyond the data section of ", data_size, " bytes"));
    expected_begin = t.end;
  }
  if (expected_begin != data_size)
    return HeaderError(absl::StrCat(data_size - expected_begin, " trailing bytes after the last tensor"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::Span<const uint8_t> file_prefix,
                                                         uint64_t file_size) {
  if (file_size < 8 || file_prefix.size() < 8)
    return HeaderError(absl::StrCat("file of ", file_size, " bytes is too short for a header"));
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | file_prefix[i];
  if (header_size > kMaxSafetensorsHeaderBytes)
    return HeaderError(absl::StrCat("header length ", header_size, " exceeds the cap of ",
                                    kMaxSafetensorsHeaderBytes, " bytes"));
  if (header_size > file_size - 8)
    return HeaderError(absl::StrCat("header length ", header_size, " runs beyond the file of ",
                                    file_size, " bytes"));
  if (file_prefix.size() < 8 + header_size) return HeaderError("header not fully available");

  const char* text = reinterpret_cast<const char*>(file_prefix.data() + 8);
  std::set<std::string> seen;
  std::string duplicate;
  auto track_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string() &&
        !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json root = json::parse(text, text + header_size, track_keys, /*allow_exceptions=*/false);
  if (root.is_discarded()) return HeaderError("invalid JSON");
  if (!root.is_object()) return HeaderError("JSON header is not an object");
  if (!duplicate.empty()) return HeaderError(absl::StrCat("duplicate tensor name '", duplicate, "'"));

  SafetensorsHeader header;
  header.data_offset = 8 + header_size;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      QSHARD_ASSIGN_OR_RETURN(header.metadata, ParseMetadata(entry));
      continue;
    }
    QSHARD_ASSIGN_OR_RETURN(TensorInfo info, ParseTensorEntry(name, entry));
    header.tensors.push_back(std::move(info));
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  QSHARD_RETURN_IF_ERROR(CheckLayout(header.tensors, file_size - header.data_offset));
  return header;
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header)
    : file_(std::move(file)), header_(std::move(header)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  QSHARD_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  auto header = ParseSafetensorsHeader(absl::MakeConstSpan(file->data(), file->size()), file->size());
  if (!header.ok()) return WithContext(header.status(), path);
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(std::move(file), *std::move(header)));
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

absl::Span<const uint8_t> SafetensorsFile::Bytes(const TensorInfo& info) const {
  return absl::MakeConstSpan(file_->data() + header_.data_offset + info.begin, info.end - info.begin);
}

absl::StatusOr<Tensor> SafetensorsFile::ReadFloat(std::string_view name) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) return absl::NotFoundError(absl::StrCat(path(), ": no tensor '", std::string(name), "'"));
  Tensor out(info->shape);
  ConvertToFloat(info->dtype, Bytes(*info).data(), info->num_elements(), out.data());
  return out;
}

}  // namespace qshard
