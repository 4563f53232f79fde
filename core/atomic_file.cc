#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {
namespace {

// Large enough that writing a multi-GB tensor costs few syscalls, small enough to not matter.
constexpr size_t kBufferBytes = size_t{4} << 20;

absl::Status ErrnoError(const std::string& path, std::string_view what, int error) {
  return absl::InternalError(absl::StrCat(path, ": ", std::string(what), ": ", std::strerror(error)));
}

// A rename is durable only once the directory entry itself reaches the disk.
absl::Status SyncDirectoryOf(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  const std::string dir = parent.empty() ? std::string(".") : parent;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(dir, "cannot open directory to fsync it", errno);
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  // Some file systems cannot fsync directories (EINVAL); the data itself is already synced.
  if (rc != 0 && error != EINVAL) return ErrnoError(dir, "fsync of directory failed", error);
  return absl::OkStatus();
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path, int fd)
    : path_(std::move(path)), temp_path_(path_ + ".tmp"), fd_(fd) {
  buffer_.reserve(kBufferBytes);
}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(const std::string& path) {
  const std::string temp_path = path + ".tmp";
  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int error = errno;
    const std::string why = absl::StrCat(path, ": cannot create ", temp_path, ": ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(why);
    if (error == EACCES || error == EPERM || error == EROFS) return absl::PermissionDeniedError(why);
    return absl::FailedPreconditionError(why);
  }
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, fd));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status AtomicFileWriter::Fail(std::string_view what, int error) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  return ErrnoError(path_, what, error);
}

absl::Status AtomicFileWriter::Flush() {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer already failed or committed"));
  const uint8_t* data = buffer_.data();
  size_t left = buffer_.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(absl::StrCat("write to ", temp_path_, " failed"), errno);
    data += n;
    left -= static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Append(absl::Span<const uint8_t> bytes) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer already failed or committed"));
  size_ += bytes.size();
  while (!bytes.empty()) {
    const size_t take = std::min(bytes.size(), kBufferBytes - buffer_.size());
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + take);
    bytes.remove_prefix(take);
    if (buffer_.size() == kBufferBytes) QSHARD_RETURN_IF_ERROR(Flush());
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Append(std::string_view text) {
  return Append(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

absl::Status AtomicFileWriter::Commit() {
  QSHARD_RETURN_IF_ERROR(Flush());
  if (::fsync(fd_) != 0) return Fail(absl::StrCat("fsync of ", temp_path_, " failed"), errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return ErrnoError(path_, absl::StrCat("close of ", temp_path_, " failed"), errno);
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0)
    return ErrnoError(path_, absl::StrCat("cannot rename ", temp_path_, " into place"), errno);
  committed_ = true;
  return SyncDirectoryOf(path_);
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view content) {
  QSHARD_ASSIGN_OR_RETURN(auto writer, AtomicFileWriter::Create(path));
  QSHARD_RETURN_IF_ERROR(writer->Append(content));
  return writer->Commit();
}

}  // namespace qshard
