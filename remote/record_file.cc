#include "remote/record_file.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "remote/wire.h"

namespace qshard {
namespace {

constexpr std::string_view kMagic = "QSREC01\n";
constexpr uint64_t kEnd = std::numeric_limits<uint64_t>::max();  // in place of a record's length
constexpr uint64_t kRecordHeader = 8 + 4;                        // length, CRC-32
constexpr uint64_t kEndBytes = 8 + 8 + 4;                        // kEnd, count, CRC-32 of the count

std::string LittleEndian(uint64_t value, int bytes) {
  std::string out(bytes, '\0');
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

uint64_t ReadLittleEndian(const uint8_t* p, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= static_cast<uint64_t>(p[i]) << (8 * i);
  return value;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RecordFileWriter>> RecordFileWriter::Create(const std::string& path, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto file, AtomicFileWriter::Create(path, env));
  QSHARD_RETURN_IF_ERROR(file->Append(kMagic));
  return std::unique_ptr<RecordFileWriter>(new RecordFileWriter(std::move(file)));
}

absl::Status RecordFileWriter::Add(std::string_view record) {
  QSHARD_RETURN_IF_ERROR(file_->Append(LittleEndian(record.size(), 8) + LittleEndian(wire::Crc32(record), 4)));
  QSHARD_RETURN_IF_ERROR(file_->Append(record));
  ++records_;
  return absl::OkStatus();
}

absl::Status RecordFileWriter::Commit() {
  const std::string count = LittleEndian(records_, 8);
  QSHARD_RETURN_IF_ERROR(file_->Append(LittleEndian(kEnd, 8) + count + LittleEndian(wire::Crc32(count), 4)));
  return file_->Commit();
}

absl::StatusOr<std::unique_ptr<RecordFileReader>> RecordFileReader::Open(const std::string& path, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto file, env->MapFile(path));
  if (file->size() < kMagic.size() ||
      std::string_view(reinterpret_cast<const char*>(file->data()), kMagic.size()) != kMagic)
    return absl::DataLossError(absl::StrCat(path, ": not a record file of this version (no \"QSREC01\" header)"));
  auto reader = std::unique_ptr<RecordFileReader>(new RecordFileReader(std::move(file)));
  reader->offset_ = kMagic.size();
  return reader;
}

absl::Status RecordFileReader::Damaged(const std::string& what) const {
  return absl::DataLossError(absl::StrCat(file_->path(), ": ", what, " at byte ", offset_, " (record ", records_, ")"));
}

absl::StatusOr<std::optional<std::string_view>> RecordFileReader::Next() {
  if (ended_) return std::nullopt;
  const uint64_t left = file_->size() - offset_;
  const uint8_t* at = file_->data() + offset_;
  if (left < 8) return Damaged("truncated");
  const uint64_t length = ReadLittleEndian(at, 8);
  if (length == kEnd) {
    if (left < kEndBytes) return Damaged("truncated in its end");
    const std::string_view count(reinterpret_cast<const char*>(at + 8), 8);
    if (wire::Crc32(count) != ReadLittleEndian(at + 16, 4)) return Damaged("CRC-32 mismatch in its end");
    if (ReadLittleEndian(at + 8, 8) != records_)
      return Damaged(absl::StrCat("its end counts ", ReadLittleEndian(at + 8, 8), " records, not ", records_));
    if (left > kEndBytes) return Damaged(absl::StrCat(left - kEndBytes, " bytes after its end"));
    ended_ = true;
    return std::nullopt;
  }
  if (left < kRecordHeader || length > left - kRecordHeader)
    return Damaged(absl::StrCat("truncated (a record of ", length, " bytes, ", left, " left)"));
  const std::string_view record(reinterpret_cast<const char*>(at + kRecordHeader), length);
  if (wire::Crc32(record) != ReadLittleEndian(at + 8, 4)) return Damaged("CRC-32 mismatch");
  offset_ += kRecordHeader + length;
  ++records_;
  return record;
}

}  // namespace qshard
