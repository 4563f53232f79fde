// Writes files so that readers see either the old content or the complete new one, never a
// torn file: bytes go to `path.tmp`, which is fsynced and renamed over `path` (and the
// directory fsynced). StagedFiles extends this to several files that appear together. All
// file access goes through an Env (core/env.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/env.h"

namespace qshard {

class AtomicFileWriter {
 public:
  // Creates (truncates) `path.tmp`; the parent directory must exist.
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path,
                                                                  Env* env = Env::Default());
  // A writer never moved into place removes its temporary file (best effort: after a crash
  // the temporary stays, and the next writer of `path` truncates it).
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Errors name the file; after one, the writer refuses everything.
  absl::Status Append(absl::Span<const uint8_t> bytes);
  absl::Status Append(std::string_view text);
  // Fsyncs and closes `path.tmp`: the bytes are durable but not yet visible under `path`.
  absl::Status Seal();
  // Renames the sealed `path.tmp` over `path` (the directory is not fsynced here).
  absl::Status MoveIntoPlace();
  // Seal, MoveIntoPlace and fsync the directory. Call once.
  absl::Status Commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  // Bytes appended so far.
  uint64_t size() const { return size_; }

 private:
  AtomicFileWriter(std::string path, std::unique_ptr<WritableFile> file, Env* env);
  absl::Status CheckWritable() const;
  // Remembers the first error, so a failed writer cannot be sealed or committed.
  absl::Status Track(absl::Status status);

  std::string path_;
  std::string temp_path_;
  std::unique_ptr<WritableFile> file_;  // null once sealed
  Env* env_;
  absl::Status error_;
  uint64_t size_ = 0;
  bool in_place_ = false;
};

// Writes a whole small file (configs, JSON indexes) atomically.
absl::Status WriteFileAtomically(const std::string& path, std::string_view content, Env* env = Env::Default());

// Files that must change together (a checkpoint's shards, index and configs): each is written
// and sealed under its temporary name as it completes, and Commit renames them all, in the
// order they were added, then fsyncs their directories. A failure before Commit leaves every
// destination as it was (the temporaries are removed when the set is destroyed); only a failed
// rename or a crash during Commit's renames can leave some files new and others old.
class StagedFiles {
 public:
  explicit StagedFiles(Env* env) : env_(env) {}

  // Seals a complete file and keeps it for Commit.
  absl::Status Add(std::unique_ptr<AtomicFileWriter> file);
  // Writes `content` to `path.tmp` and adds it.
  absl::Status Write(const std::string& path, std::string_view content);
  // Moves every file into place. Call once.
  absl::Status Commit();

 private:
  Env* env_;
  std::vector<std::unique_ptr<AtomicFileWriter>> files_;
};

}  // namespace qshard
