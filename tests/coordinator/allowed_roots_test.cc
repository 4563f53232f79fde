// Path confinement: inside a root is allowed, whether the path exists or not; relative paths,
// "..", other directories and symlinks that lead out are refused with the field named.
#include "coordinator/allowed_roots.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using testing::ScopedTempDir;

TEST(AllowedRootsTest, ConfinesPathsToTheRoots) {
  ScopedTempDir root, other;
  fs::create_directories(root.Child("models/m"));
  fs::create_symlink(other.path(), root.Child("escape"));
  fs::create_symlink(root.Child("models"), root.Child("inside"));
  fs::create_symlink(other.Child("missing"), root.Child("dangling"));
  auto roots = AllowedRoots::Create({root.path()});
  ASSERT_TRUE(roots.ok()) << roots.status();

  EXPECT_TRUE(roots->Check(root.Child("models/m"), "model_path").ok());
  EXPECT_TRUE(roots->Check(root.Child("out/new/deeper"), "output_path").ok());
  EXPECT_TRUE(roots->Check(root.Child("inside/m"), "model_path").ok());  // a symlink that stays inside

  const auto expect = [&](const std::string& path, absl::StatusCode code) {
    const absl::Status status = roots->Check(path, "output_path");
    EXPECT_EQ(status.code(), code) << path << ": " << status;
    EXPECT_NE(status.message().find("output_path"), std::string::npos) << status;
  };
  expect("relative/out", absl::StatusCode::kInvalidArgument);
  expect(root.Child("models/../../x"), absl::StatusCode::kInvalidArgument);
  expect(root.Child("models/.."), absl::StatusCode::kInvalidArgument);
  expect(other.Child("out"), absl::StatusCode::kPermissionDenied);
  expect("/", absl::StatusCode::kPermissionDenied);
  expect(root.path() + "-sibling/out", absl::StatusCode::kPermissionDenied);  // a prefix is not a parent
  expect(root.Child("escape/out"), absl::StatusCode::kPermissionDenied);
  expect(root.Child("escape"), absl::StatusCode::kPermissionDenied);
  expect(root.Child("dangling/out"), absl::StatusCode::kPermissionDenied);
}

TEST(AllowedRootsTest, RootsMustExist) {
  EXPECT_EQ(AllowedRoots::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = AllowedRoots::Create({"/nonexistent/qshard-root"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("--allowed-root"), std::string::npos);
}

}  // namespace
}  // namespace qshard
