// A test Env over the real file system that fails on demand: the Nth append, appends past a
// byte budget (a full disk), every fsync, or a crash at the first rename, after which nothing
// works until Restart() drops what a real crash would lose (bytes never fsynced, files whose
// directory entry was never fsynced). Faults look like the real ones: the errno text and the
// status code of core/env.h's ErrnoStatus, naming the file.
#pragma once

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "core/env.h"
#include "core/status.h"

namespace qshard::testing {

class FaultInjectionEnv : public EnvWrapper {
 public:
  FaultInjectionEnv() : EnvWrapper(Env::Default()) {}

  // The `n`th append (counting from 1, over all files written through this Env) fails and
  // writes nothing; 0 disarms it.
  void FailAppendNumber(int n, int error = EIO) {
    std::lock_guard<std::mutex> lock(mutex_);
    faults_.fail_append = n;
    faults_.append_error = error;
  }
  // After `bytes` bytes in all, appends fail with ENOSPC (the one that crosses the budget
  // writes what still fits, as a real short write would).
  void FailAfterBytes(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    faults_.byte_budget = bytes;
  }
  // Every fsync of a file fails.
  void FailSync() {
    std::lock_guard<std::mutex> lock(mutex_);
    faults_.fail_sync = true;
  }
  // The first rename "crashes the process": it fails, and so does every later call (removing
  // temporaries included, as a dead process cleans nothing up) until Restart().
  void CrashAtFirstRename() {
    std::lock_guard<std::mutex> lock(mutex_);
    faults_.crash_at_rename = true;
  }
  // Comes back from a crash as the disk would: every file written through this Env is cut to
  // its last fsynced length, or removed if its directory was not fsynced since it was created.
  // Renames that happened are kept (a real file system may also undo one whose directory was
  // not fsynced, which only brings back the old complete file).
  // Clears every fault.
  void Restart() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [path, state] : files_) {
      std::error_code ec;
      if (!std::filesystem::exists(path, ec)) continue;
      if (!state.entry_synced) {
        std::filesystem::remove(path, ec);
      } else if (std::filesystem::file_size(path, ec) > state.synced) {
        std::filesystem::resize_file(path, state.synced, ec);
      }
    }
    files_.clear();
    faults_ = Faults{};
  }

  bool crashed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return faults_.crashed;
  }
  // Appends seen so far (to pick a failing one).
  int appends() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return faults_.appends;
  }
  // Bytes appended so far (to size a full disk).
  uint64_t bytes_appended() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return faults_.bytes;
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    QSHARD_RETURN_IF_ERROR(Alive(path));
    QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, target()->NewWritableFile(path));
    std::lock_guard<std::mutex> lock(mutex_);
    files_[path] = FileState{};
    return std::unique_ptr<WritableFile>(new FaultFile(this, std::move(file)));
  }
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override {
    QSHARD_RETURN_IF_ERROR(Alive(path));
    return target()->ReadFileToString(path);
  }
  absl::StatusOr<std::unique_ptr<MappedFile>> MapFile(const std::string& path) override {
    QSHARD_RETURN_IF_ERROR(Alive(path));
    return target()->MapFile(path);
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (faults_.crash_at_rename) faults_.crashed = true;
    }
    QSHARD_RETURN_IF_ERROR(Alive(from));
    QSHARD_RETURN_IF_ERROR(target()->RenameFile(from, to));
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = files_.find(from);
    if (it != files_.end()) {
      FileState moved = it->second;
      moved.entry_synced = true;  // renames are kept (see Restart)
      files_.erase(it);
      files_[to] = moved;
    }
    return absl::OkStatus();
  }
  absl::Status RemoveFile(const std::string& path) override {
    QSHARD_RETURN_IF_ERROR(Alive(path));
    return target()->RemoveFile(path);
  }
  absl::Status RemoveDirRecursively(const std::string& path) override {
    QSHARD_RETURN_IF_ERROR(Alive(path));
    return target()->RemoveDirRecursively(path);
  }
  absl::Status CreateDirs(const std::string& path) override {
    QSHARD_RETURN_IF_ERROR(Alive(path));
    return target()->CreateDirs(path);
  }
  absl::Status SyncDir(const std::string& path) override {
    QSHARD_RETURN_IF_ERROR(Alive(path));
    QSHARD_RETURN_IF_ERROR(target()->SyncDir(path));
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [file, state] : files_)
      if (ParentDir(file) == path) state.entry_synced = true;
    return absl::OkStatus();
  }

 private:
  struct Faults {
    int fail_append = 0;
    int append_error = EIO;
    uint64_t byte_budget = UINT64_MAX;
    bool fail_sync = false;
    bool crash_at_rename = false;
    bool crashed = false;
    int appends = 0;
    uint64_t bytes = 0;
  };
  struct FileState {
    uint64_t written = 0;
    uint64_t synced = 0;
    bool entry_synced = false;
  };

  absl::Status Alive(const std::string& path) const {
    if (!crashed()) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat(path, ": the process crashed (simulated)"));
  }

  // Passes the bytes on, cut short or refused where a fault says so, and records what was
  // written and synced for Restart.
  class FaultFile : public WritableFile {
   public:
    FaultFile(FaultInjectionEnv* env, std::unique_ptr<WritableFile> file) : env_(env), file_(std::move(file)) {}

    absl::Status Append(absl::Span<const uint8_t> bytes) override {
      QSHARD_RETURN_IF_ERROR(env_->Alive(path()));
      size_t allowed = bytes.size();
      int error = 0;
      {
        std::lock_guard<std::mutex> lock(env_->mutex_);
        Faults& f = env_->faults_;
        if (++f.appends == f.fail_append) {
          error = f.append_error;
          allowed = 0;
        } else if (f.byte_budget - f.bytes < bytes.size()) {
          error = ENOSPC;
          allowed = f.byte_budget - f.bytes;
        }
        f.bytes += allowed;
        env_->files_[path()].written += allowed;
      }
      QSHARD_RETURN_IF_ERROR(file_->Append(bytes.subspan(0, allowed)));
      if (error != 0) return ErrnoStatus(path(), "write failed", error);
      return absl::OkStatus();
    }
    absl::Status Flush() override {
      QSHARD_RETURN_IF_ERROR(env_->Alive(path()));
      return file_->Flush();
    }
    absl::Status Sync() override {
      QSHARD_RETURN_IF_ERROR(env_->Alive(path()));
      bool fail = false;
      {
        std::lock_guard<std::mutex> lock(env_->mutex_);
        fail = env_->faults_.fail_sync;
      }
      if (fail) return ErrnoStatus(path(), "fsync failed", EIO);
      QSHARD_RETURN_IF_ERROR(file_->Sync());
      std::lock_guard<std::mutex> lock(env_->mutex_);
      FileState& state = env_->files_[path()];
      state.synced = state.written;
      return absl::OkStatus();
    }
    absl::Status Close() override {
      QSHARD_RETURN_IF_ERROR(env_->Alive(path()));
      return file_->Close();
    }
    const std::string& path() const override { return file_->path(); }

   private:
    FaultInjectionEnv* env_;
    std::unique_ptr<WritableFile> file_;
  };

  mutable std::mutex mutex_;
  Faults faults_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, FileState> files_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace qshard::testing
