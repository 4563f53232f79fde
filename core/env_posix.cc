// Env::Default(): the POSIX file system (open/write/fsync/rename, mmap for reading checkpoints).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/env.h"
#include "core/status.h"

namespace qshard {
namespace {

// Large enough that writing a multi-GB tensor costs few syscalls, small enough to not matter.
constexpr size_t kWriteBufferBytes = size_t{4} << 20;

absl::Status WriteAll(int fd, const std::string& path, const uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(path, "write failed", errno);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Append(absl::Span<const uint8_t> bytes) override {
    QSHARD_RETURN_IF_ERROR(CheckOpen());
    if (buffer_.size() + bytes.size() <= kWriteBufferBytes) {
      if (buffer_.capacity() < kWriteBufferBytes) buffer_.reserve(kWriteBufferBytes);
      buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
      return absl::OkStatus();
    }
    QSHARD_RETURN_IF_ERROR(Flush());
    if (bytes.size() < kWriteBufferBytes) {
      buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
      return absl::OkStatus();
    }
    return WriteAll(fd_, path_, bytes.data(), bytes.size());  // large pieces skip the copy
  }

  absl::Status Flush() override {
    QSHARD_RETURN_IF_ERROR(CheckOpen());
    const absl::Status status = WriteAll(fd_, path_, buffer_.data(), buffer_.size());
    buffer_.clear();
    return status;
  }

  absl::Status Sync() override {
    QSHARD_RETURN_IF_ERROR(Flush());
    if (::fsync(fd_) != 0) return ErrnoStatus(path_, "fsync failed", errno);
    return absl::OkStatus();
  }

  absl::Status Close() override {
    QSHARD_RETURN_IF_ERROR(CheckOpen());
    const absl::Status flushed = Flush();
    const int rc = ::close(fd_);
    const int error = errno;
    fd_ = -1;
    std::vector<uint8_t>().swap(buffer_);
    QSHARD_RETURN_IF_ERROR(flushed);
    if (rc != 0) return ErrnoStatus(path_, "close failed", error);
    return absl::OkStatus();
  }

  const std::string& path() const override { return path_; }

 private:
  absl::Status CheckOpen() const {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": file already closed"));
    return absl::OkStatus();
  }

  std::string path_;
  int fd_;
  std::vector<uint8_t> buffer_;
};

class PosixMappedFile final : public MappedFile {
 public:
  PosixMappedFile(std::string path, const uint8_t* data, uint64_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  ~PosixMappedFile() override {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  const uint8_t* data() const override { return data_; }
  uint64_t size() const override { return size_; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  const uint8_t* data_;
  uint64_t size_;
};

// An open descriptor of a regular file with its size; closes itself.
struct OpenRegularFile {
  int fd = -1;
  uint64_t size = 0;
  ~OpenRegularFile() {
    if (fd >= 0) ::close(fd);
  }
};

absl::Status OpenForReading(const std::string& path, OpenRegularFile& file) {
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0) return ErrnoStatus(path, "cannot open", errno);
  struct stat st;
  if (::fstat(file.fd, &st) != 0) return ErrnoStatus(path, "fstat failed", errno);
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  file.size = static_cast<uint64_t>(st.st_size);
  return absl::OkStatus();
}

class PosixEnv final : public Env {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(path, "cannot create", errno);
    return std::make_unique<PosixWritableFile>(path, fd);
  }

  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override {
    OpenRegularFile file;
    QSHARD_RETURN_IF_ERROR(OpenForReading(path, file));
    std::string content(file.size, '\0');
    size_t done = 0;
    while (done < content.size()) {
      const ssize_t n = ::read(file.fd, content.data() + done, content.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(path, "read failed", errno);
      if (n == 0) return absl::DataLossError(absl::StrCat(path, ": file shrank while being read"));
      done += static_cast<size_t>(n);
    }
    return content;
  }

  absl::StatusOr<std::unique_ptr<MappedFile>> MapFile(const std::string& path) override {
    OpenRegularFile file;
    QSHARD_RETURN_IF_ERROR(OpenForReading(path, file));
    const uint8_t* data = nullptr;
    if (file.size > 0) {  // mmap refuses empty mappings
      void* p = ::mmap(nullptr, file.size, PROT_READ, MAP_PRIVATE, file.fd, 0);
      if (p == MAP_FAILED) return ErrnoStatus(path, "mmap failed", errno);
      data = static_cast<const uint8_t*>(p);
    }
    return std::make_unique<PosixMappedFile>(path, data, file.size);
  }

  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    if (std::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus(from, absl::StrCat("cannot rename to ", to), errno);
    return absl::OkStatus();
  }

  absl::Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus(path, "cannot remove", errno);
    return absl::OkStatus();
  }

  absl::Status RemoveDirRecursively(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return ErrnoStatus(path, "cannot remove directory", ec.value());
    return absl::OkStatus();
  }

  absl::Status CreateDirs(const std::string& path) override {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return ErrnoStatus(path, "cannot create directory", ec.value());
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(path, "cannot open directory to fsync it", errno);
    const int rc = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    // Some file systems cannot fsync directories (EINVAL); the files' data is synced anyway.
    if (rc != 0 && error != EINVAL) return ErrnoStatus(path, "fsync of directory failed", error);
    return absl::OkStatus();
  }

  bool FileExists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  bool IsDirectory(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(path, "cannot stat", errno);
    if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
    return static_cast<uint64_t>(st.st_size);
  }

  absl::StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoStatus(dir, "cannot list directory", errno);
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* entry = ::readdir(d)) {
      const std::string_view name(entry->d_name);
      if (name != "." && name != "..") names.emplace_back(name);
    }
    const int error = errno;
    ::closedir(d);
    if (error != 0) return ErrnoStatus(dir, "cannot list directory", error);
    std::sort(names.begin(), names.end());
    return names;
  }
};

}  // namespace

Env* Env::Default() {
  static Env* const env = new PosixEnv;  // never destroyed: files may be written at exit
  return env;
}

}  // namespace qshard
