#include "core/atomic_file.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {

AtomicFileWriter::AtomicFileWriter(std::string path, std::unique_ptr<WritableFile> file, Env* env)
    : path_(std::move(path)), temp_path_(path_ + ".tmp"), file_(std::move(file)), env_(env) {}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(const std::string& path, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto file, env->NewWritableFile(path + ".tmp"));
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, std::move(file), env));
}

AtomicFileWriter::~AtomicFileWriter() {
  file_.reset();
  // Nothing to report to: a leftover temporary is harmless and truncated by the next writer.
  if (!in_place_) env_->RemoveFile(temp_path_).IgnoreError();
}

absl::Status AtomicFileWriter::CheckWritable() const {
  QSHARD_RETURN_IF_ERROR(error_);
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": file already sealed"));
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Track(absl::Status status) {
  if (!status.ok() && error_.ok()) error_ = status;
  return status;
}

absl::Status AtomicFileWriter::Append(absl::Span<const uint8_t> bytes) {
  QSHARD_RETURN_IF_ERROR(CheckWritable());
  size_ += bytes.size();
  return Track(file_->Append(bytes));
}

absl::Status AtomicFileWriter::Append(std::string_view text) {
  return Append(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

absl::Status AtomicFileWriter::Seal() {
  QSHARD_RETURN_IF_ERROR(CheckWritable());
  QSHARD_RETURN_IF_ERROR(Track(file_->Sync()));
  QSHARD_RETURN_IF_ERROR(Track(file_->Close()));
  file_.reset();
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::MoveIntoPlace() {
  QSHARD_RETURN_IF_ERROR(error_);
  if (file_ != nullptr || in_place_)
    return absl::FailedPreconditionError(absl::StrCat(path_, ": only a sealed file can be moved into place, once"));
  QSHARD_RETURN_IF_ERROR(Track(env_->RenameFile(temp_path_, path_)));
  in_place_ = true;
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  QSHARD_RETURN_IF_ERROR(Seal());
  QSHARD_RETURN_IF_ERROR(MoveIntoPlace());
  // A rename is durable only once the directory entry itself reaches the disk.
  return env_->SyncDir(ParentDir(path_));
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view content, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto writer, AtomicFileWriter::Create(path, env));
  QSHARD_RETURN_IF_ERROR(writer->Append(content));
  return writer->Commit();
}

absl::Status StagedFiles::Add(std::unique_ptr<AtomicFileWriter> file) {
  QSHARD_RETURN_IF_ERROR(file->Seal());
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::Status StagedFiles::Write(const std::string& path, std::string_view content) {
  QSHARD_ASSIGN_OR_RETURN(auto writer, AtomicFileWriter::Create(path, env_));
  QSHARD_RETURN_IF_ERROR(writer->Append(content));
  return Add(std::move(writer));
}

absl::Status StagedFiles::Commit() {
  std::set<std::string> dirs;
  for (const auto& file : files_) {
    QSHARD_RETURN_IF_ERROR(file->MoveIntoPlace());
    dirs.insert(ParentDir(file->path()));
  }
  for (const std::string& dir : dirs) QSHARD_RETURN_IF_ERROR(env_->SyncDir(dir));
  return absl::OkStatus();
}

}  // namespace qshard
