#include "core/safetensors.h"

#include <algorithm>
#include <functional>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

using nlohmann::json;

absl::Status HeaderError(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors header: ", std::string(what)));
}

// Names and parser messages in errors come from a file we did not write: quote at most 200
// bytes (cut on a UTF-8 boundary) so a hostile 100 MB name cannot become a 100 MB message.
std::string Quote(std::string_view text) {
  constexpr size_t kMaxQuoted = 200;
  if (text.size() <= kMaxQuoted) return absl::StrCat("'", std::string(text), "'");
  size_t cut = kMaxQuoted;
  while (cut > 0 && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("'", std::string(text.substr(0, cut)), "...' (", text.size(), " bytes)");
}

absl::Status EntryError(const std::string& name, std::string_view what) {
  return HeaderError(absl::StrCat("tensor ", Quote(name), ": ", std::string(what)));
}

absl::StatusOr<std::vector<int64_t>> ParseShape(const std::string& name, const json& shape) {
  if (!shape.is_array()) return EntryError(name, "shape is not an array");
  std::vector<int64_t> dims;
  for (const json& d : shape) {
    if (!d.is_number_integer()) return EntryError(name, "shape has a non-integer entry");
    if (!d.is_number_unsigned()) return EntryError(name, "negative dimension in shape");
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) return EntryError(name, "dimension overflows int64");
    dims.push_back(static_cast<int64_t>(v));
  }
  return dims;
}

absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& name, const json& entry) {
  if (!entry.is_object()) return EntryError(name, "entry is not an object");
  TensorInfo info;
  info.name = name;
  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) return EntryError(name, "missing dtype");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  const auto dtype = ParseDType(dtype_name);
  if (!dtype) return EntryError(name, absl::StrCat("unknown dtype ", Quote(dtype_name)));
  info.dtype = *dtype;
  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return EntryError(name, "missing shape");
  QSHARD_ASSIGN_OR_RETURN(info.shape, ParseShape(name, *shape_it));
  const auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
    return EntryError(name, "data_offsets must be two non-negative integers");
  info.begin = (*offsets_it)[0].get<uint64_t>();
  info.end = (*offsets_it)[1].get<uint64_t>();
  if (info.end < info.begin) return EntryError(name, "data_offsets end before begin");

  uint64_t elements = 1;
  for (int64_t d : info.shape)
    if (__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements))
      return EntryError(name, "shape element count overflows");
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements, static_cast<uint64_t>(DTypeSize(info.dtype)), &bytes) ||
      elements > static_cast<uint64_t>(INT64_MAX))
    return EntryError(name, "byte size overflows");
  if (info.end - info.begin != bytes)
    return EntryError(name, absl::StrCat("data_offsets span ", info.end - info.begin,
                                         " bytes but shape x dtype needs ", bytes));
  return info;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const json& metadata) {
  if (!metadata.is_object()) return HeaderError("__metadata__ is not an object");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string())
      return HeaderError(absl::StrCat("__metadata__ value of ", Quote(key), " is not a string"));
    out[key] = value.get<std::string>();
  }
  return out;
}

// Tensors must lie inside the data section and tile it exactly: no overlap, no gap, nothing
// after the last. Bounds are checked first so an out-of-range offset is reported as such, not
// as a gap.
absl::Status CheckLayout(const std::vector<TensorInfo>& sorted, uint64_t data_size) {
  for (const TensorInfo& t : sorted) {
    if (t.end > data_size)
      return HeaderError(absl::StrCat("tensor ", Quote(t.name), " offsets [", t.begin, ",", t.end,
                                      ") beyond the data section of ", data_size, " bytes"));
  }
  uint64_t expected_begin = 0;
  for (const TensorInfo& t : sorted) {
    if (t.begin < expected_begin)
      return HeaderError(absl::StrCat("tensor ", Quote(t.name), " overlaps the previous tensor"));
    if (t.begin > expected_begin)
      return HeaderError(absl::StrCat("gap of ", t.begin - expected_begin, " bytes before tensor ",
                                      Quote(t.name)));
    expected_begin = t.end;
  }
  if (expected_begin != data_size)
    return HeaderError(absl::StrCat(data_size - expected_begin, " trailing bytes after the last tensor"));
  return absl::OkStatus();
}

// nlohmann keeps the last of duplicate keys while other readers keep the first; a file that
// means different things to different loaders is refused. Only the two levels a valid header
// has are tracked (tensor names, and the fields of one entry).
class DuplicateKeyFinder {
 public:
  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    using Event = json::parse_event_t;
    if (!error_.empty()) return true;
    if (event == Event::object_start && depth == 1) entry_keys_.clear();
    if (event != Event::key || depth > 2 || !parsed.is_string()) return true;
    const std::string& key = parsed.get_ref<const std::string&>();
    if (depth == 1) {
      if (!names_.insert(key).second) error_ = absl::StrCat("duplicate tensor name ", Quote(key));
      entry_ = key;
    } else if (!entry_keys_.insert(key).second) {
      error_ = absl::StrCat("duplicate key ", Quote(key), " in entry ", Quote(entry_));
    }
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  std::set<std::string> names_;
  std::set<std::string> entry_keys_;
  std::string entry_;
  std::string error_;
};

// Parser messages quote the offending token: keep a short printable-ASCII prefix.
std::string PrintablePrefix(std::string_view text) {
  std::string out(text.substr(0, 160));
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
  return out;
}

}  // namespace

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::Span<const uint8_t> file_prefix,
                                                         uint64_t file_size) {
  if (file_size < 8 || file_prefix.size() < 8)
    return HeaderError(absl::StrCat("file of ", file_size, " bytes is too short for the 8-byte header length"));
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | file_prefix[i];
  if (header_size > kMaxSafetensorsHeaderBytes)
    return HeaderError(absl::StrCat("header length ", header_size, " exceeds the cap of ",
                                    kMaxSafetensorsHeaderBytes, " bytes"));
  if (header_size > file_size - 8)
    return HeaderError(absl::StrCat("header length ", header_size, " runs beyond the end of the file (",
                                    file_size, " bytes; truncated?)"));
  if (file_prefix.size() < 8 + header_size)
    return HeaderError(absl::StrCat("only ", file_prefix.size() - 8, " of the ", header_size,
                                    " header bytes were provided"));

  const char* text = reinterpret_cast<const char*>(file_prefix.data() + 8);
  DuplicateKeyFinder duplicates;
  json root;
  try {
    root = json::parse(text, text + header_size, std::ref(duplicates));
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    return HeaderError(absl::StrCat("invalid JSON: ", PrintablePrefix(e.what())));
  }
  if (!root.is_object()) return HeaderError("JSON header is not an object");
  if (!duplicates.error().empty()) return HeaderError(duplicates.error());

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
  // Empty tensors may share an offset; the name breaks the tie so the order is deterministic.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  QSHARD_RETURN_IF_ERROR(CheckLayout(header.tensors, file_size - header.data_offset));
  return header;
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header)
    : file_(std::move(file)), header_(std::move(header)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto file, env->MapFile(path));
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
