// A file of CRC-checked records, for stored values too large for one protobuf message (a
// finished layer's solutions at OPT-175B: 1.8 GB of codes, near protobuf's 2 GiB limit): it is
// written atomically through the Env (core/atomic_file.h) one record at a time, and read back
// from a mapping one record at a time, each record checked on its own.
//
// Layout: the 8 bytes "QSREC01\n"; each record as a little-endian u64 length, the u32 CRC-32
// of its bytes and its bytes; then the end: the u64 2^64-1, the u64 record count and the u32
// CRC-32 of that count's 8 bytes. A file cut anywhere (even between records), damaged, or of
// another format is DATA_LOSS naming the file, and the record and byte offset where it fails.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/atomic_file.h"
#include "core/env.h"

namespace qshard {

class RecordFileWriter {
 public:
  // Starts `path` (written as `path.tmp` until Commit); the directory must exist.
  static absl::StatusOr<std::unique_ptr<RecordFileWriter>> Create(const std::string& path, Env* env = Env::Default());

  absl::Status Add(std::string_view record);
  // Writes the end and moves the file into place atomically. Call once.
  absl::Status Commit();

 private:
  explicit RecordFileWriter(std::unique_ptr<AtomicFileWriter> file) : file_(std::move(file)) {}

  std::unique_ptr<AtomicFileWriter> file_;
  uint64_t records_ = 0;
};

class RecordFileReader {
 public:
  // Maps `path` and checks its format; DATA_LOSS for a file not in this format.
  static absl::StatusOr<std::unique_ptr<RecordFileReader>> Open(const std::string& path, Env* env = Env::Default());

  // The next record, its CRC checked (a view into the mapping, valid while the reader lives),
  // or nullopt once the end is reached with the count of records it states.
  absl::StatusOr<std::optional<std::string_view>> Next();

 private:
  explicit RecordFileReader(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  absl::Status Damaged(const std::string& what) const;

  std::unique_ptr<MappedFile> file_;
  uint64_t offset_ = 0;
  uint64_t records_ = 0;
  bool ended_ = false;
};

}  // namespace qshard
