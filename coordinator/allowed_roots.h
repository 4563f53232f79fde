// The directories the coordinator may read models from and write outputs to (its repeatable
// --allowed-root; conventions.md, "Servers and security"). A path is allowed when it is
// absolute, has no ".." component, and resolves under a root: the deepest existing ancestor is
// resolved with realpath, so a symlink anywhere on the way is followed before the check.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qshard {

class AllowedRoots {
 public:
  // Every root must exist; at least one is required (errors name --allowed-root).
  static absl::StatusOr<AllowedRoots> Create(const std::vector<std::string>& roots);

  // OK, INVALID_ARGUMENT (relative, "..") or PERMISSION_DENIED (outside every root); errors
  // name `field` and the path.
  absl::Status Check(const std::string& path, const std::string& field) const;

  const std::vector<std::string>& resolved() const { return resolved_; }

 private:
  explicit AllowedRoots(std::vector<std::string> resolved) : resolved_(std::move(resolved)) {}
  std::vector<std::string> resolved_;
};

}  // namespace qshard
