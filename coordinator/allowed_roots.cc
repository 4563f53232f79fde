#include "coordinator/allowed_roots.h"

#include <climits>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;

std::string RealPath(const fs::path& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : std::string();
}

// The path with its deepest existing ancestor resolved and the missing rest appended; "" when
// that ancestor cannot be resolved (a dangling symlink could point anywhere).
std::string ResolveDeepestExisting(const fs::path& path) {
  fs::path existing = path;
  fs::path rest;
  while (true) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(existing, ec)) || existing == existing.root_path()) {
      const std::string resolved = RealPath(existing);
      if (resolved.empty() || rest.empty()) return resolved;
      return (fs::path(resolved) / rest).lexically_normal().string();
    }
    rest = rest.empty() ? existing.filename() : existing.filename() / rest;
    existing = existing.parent_path();
  }
}

bool IsUnder(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                          path[root.size()] == '/');
}

}  // namespace

absl::StatusOr<AllowedRoots> AllowedRoots::Create(const std::vector<std::string>& roots) {
  if (roots.empty()) return absl::InvalidArgumentError("--allowed-root: at least one directory is required");
  std::vector<std::string> resolved;
  for (const std::string& root : roots) {
    std::error_code ec;
    const std::string real = RealPath(root);
    if (real.empty() || !fs::is_directory(real, ec))
      return absl::InvalidArgumentError(absl::StrCat("--allowed-root: ", root, " is not an existing directory"));
    resolved.push_back(real);
  }
  return AllowedRoots(std::move(resolved));
}

absl::Status AllowedRoots::Check(const std::string& path, const std::string& field) const {
  const fs::path p(path);
  if (!p.is_absolute()) return absl::InvalidArgumentError(absl::StrCat(field, ": '", path, "' is not an absolute path"));
  for (const fs::path& part : p)
    if (part == "..") return absl::InvalidArgumentError(absl::StrCat(field, ": '", path, "' contains '..'"));
  const std::string resolved = ResolveDeepestExisting(p);
  for (const std::string& root : resolved_)
    if (!resolved.empty() && IsUnder(resolved, root)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(field, ": '", path, "' (resolved: ", resolved,
                                                  ") is outside the coordinator's allowed roots (",
                                                  absl::StrJoin(resolved_, ", "), ")"));
}

}  // namespace qshard
