// Writes a file so that readers see either its old content or the complete new one, never a
// torn file: bytes go to `path.tmp`, which is fsynced and renamed over `path` on Commit (and
// the directory fsynced). An uncommitted writer removes its temporary file when destroyed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace qshard {

class AtomicFileWriter {
 public:
  // Creates (truncates) `path.tmp`; the parent directory must exist.
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Buffered; errors name the path.
  absl::Status Append(absl::Span<const uint8_t> bytes);
  absl::Status Append(std::string_view text);
  // Flushes, fsyncs, renames over `path` and fsyncs the directory. Call once.
  absl::Status Commit();

  const std::string& path() const { return path_; }
  // Bytes appended so far.
  uint64_t size() const { return size_; }

 private:
  AtomicFileWriter(std::string path, int fd);
  absl::Status Flush();
  absl::Status Fail(std::string_view what, int error);

  std::string path_;
  std::string temp_path_;
  int fd_;
  std::vector<uint8_t> buffer_;
  uint64_t size_ = 0;
  bool committed_ = false;
};

// Writes a whole small file (configs, JSON indexes) atomically.
absl::Status WriteFileAtomically(const std::string& path, std::string_view content);

}  // namespace qshard
