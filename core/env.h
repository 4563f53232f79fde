// The one seam through which qshard touches files: every read, write, rename and directory
// operation of core/ and worker/ goes through an Env, so tests can inject faults (a failed
// write, a full disk, a failed fsync, a crash) and an object store can be plugged in later.
// Env::Default() is the POSIX file system; EnvWrapper forwards everything to another Env, so a
// test Env overrides only what it needs. Every error names the path (and the errno text).
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

// A file being written from its start. Not thread-safe. After a failed call the file's content
// is undefined (buffered bytes may be lost): writers give up on it (see AtomicFileWriter).
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // May buffer; the bytes reach the file at the latest on Flush, Sync or Close.
  virtual absl::Status Append(absl::Span<const uint8_t> bytes) = 0;
  // Hands buffered bytes to the operating system (not yet durable).
  virtual absl::Status Flush() = 0;
  // Flushes and makes the bytes durable (fsync).
  virtual absl::Status Sync() = 0;
  // Flushes and closes; later calls fail. The destructor closes a file left open.
  virtual absl::Status Close() = 0;
  virtual const std::string& path() const = 0;
};

// A whole file held read-only in memory: a mapping for POSIX, so a worker touches only the
// pages of the tensors it asks for. (As with any mapping, a file truncated by another process
// while mapped faults on access: checkpoints must not be rewritten in place, which is why
// qshard's writers replace files by rename.)
class MappedFile {
 public:
  virtual ~MappedFile() = default;
  virtual const uint8_t* data() const = 0;
  virtual uint64_t size() const = 0;
  virtual const std::string& path() const = 0;
};

class Env {
 public:
  virtual ~Env() = default;
  // The POSIX file system; lives for the whole program.
  static Env* Default();

  // Creates `path`, or truncates it if it exists; the parent directory must exist.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // The whole content of a regular file.
  virtual absl::StatusOr<std::string> ReadFileToString(const std::string& path) = 0;
  // A regular file mapped read-only.
  virtual absl::StatusOr<std::unique_ptr<MappedFile>> MapFile(const std::string& path) = 0;

  // Replaces `to` (a file) by `from` in one step.
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // Removes a directory and everything in it; a missing directory is not an error.
  virtual absl::Status RemoveDirRecursively(const std::string& path) = 0;
  // Creates a directory and its missing parents; an existing directory is not an error.
  virtual absl::Status CreateDirs(const std::string& path) = 0;
  // Makes the directory's entries (files created, renamed or removed in it) durable.
  virtual absl::Status SyncDir(const std::string& path) = 0;

  // Whether `path` exists (of any kind). Errors other than "absent" count as absent.
  virtual bool FileExists(const std::string& path) = 0;
  virtual bool IsDirectory(const std::string& path) = 0;
  // Size of a regular file; anything else is an error.
  virtual absl::StatusOr<uint64_t> GetFileSize(const std::string& path) = 0;
  // Names (not paths) of the entries of a directory, without "." and "..", sorted.
  virtual absl::StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) = 0;
};

// Forwards every call to `target`, which must outlive it.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    return target_->NewWritableFile(path);
  }
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override {
    return target_->ReadFileToString(path);
  }
  absl::StatusOr<std::unique_ptr<MappedFile>> MapFile(const std::string& path) override {
    return target_->MapFile(path);
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  absl::Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  absl::Status RemoveDirRecursively(const std::string& path) override {
    return target_->RemoveDirRecursively(path);
  }
  absl::Status CreateDirs(const std::string& path) override { return target_->CreateDirs(path); }
  absl::Status SyncDir(const std::string& path) override { return target_->SyncDir(path); }
  bool FileExists(const std::string& path) override { return target_->FileExists(path); }
  bool IsDirectory(const std::string& path) override { return target_->IsDirectory(path); }
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override { return target_->GetFileSize(path); }
  absl::StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) override {
    return target_->GetChildren(dir);
  }

 private:
  Env* target_;
};

// The error for a failed system call on `path`: "path: what: strerror(error)", with the code
// that says what a caller can do about it (NotFound, PermissionDenied, ResourceExhausted for a
// full disk, ...). Env implementations and the fault-injecting test Env share it.
absl::Status ErrnoStatus(const std::string& path, const std::string& what, int error);

// Whether `path` is a regular file (a directory named like a file does not count).
inline bool IsRegularFile(Env* env, const std::string& path) { return env->GetFileSize(path).ok(); }

// The directory holding `path` ("." for a bare file name).
std::string ParentDir(const std::string& path);

}  // namespace qshard
