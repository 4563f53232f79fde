// Bearer tokens and submission limits (coordinator/client_access.h): the token file's rules,
// a missing, malformed or wrong token is UNAUTHENTICATED without echoing it, callers are told
// apart, and each caller's bucket empties and refills with the clock.
#include "coordinator/client_access.h"

#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using testing::ScopedTempDir;
using testing::WriteTextFile;

constexpr char kToken1[] = "0123456789abcdef0123";
constexpr char kToken2[] = "fedcba9876543210fedc";

ClientAccessOptions SubmitsPerMinute(int rate) {
  ClientAccessOptions options;
  options.submits_per_minute = rate;
  return options;
}

TEST(ClientAccessTest, TokenFileRules) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("tokens"), absl::StrCat("# release tooling\n", kToken1, "\n\n  ", kToken2, "  \n"));
  auto tokens = ReadTokenFile(dir.Child("tokens"), "--token-file");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, (std::vector<std::string>{kToken1, kToken2}));

  WriteTextFile(dir.Child("short"), absl::StrCat(kToken1, "\nsecret-short\n"));
  const absl::Status short_token = ReadTokenFile(dir.Child("short"), "--token-file").status();
  EXPECT_NE(short_token.message().find("line 2"), std::string::npos) << short_token;
  EXPECT_EQ(short_token.message().find("secret-short"), std::string::npos) << "the line's text was echoed";
  WriteTextFile(dir.Child("spaced"), "0123456789 abcdef0123\n");
  EXPECT_FALSE(ReadTokenFile(dir.Child("spaced"), "--token-file").ok());
  WriteTextFile(dir.Child("empty"), "# nothing\n");
  EXPECT_NE(ReadTokenFile(dir.Child("empty"), "--token-file").status().message().find("no token"), std::string::npos);
  EXPECT_NE(ReadTokenFile(dir.Child("missing"), "--token-file").status().message().find("--token-file"),
            std::string::npos);
}

TEST(ClientAccessTest, TokensAuthenticateWithoutBeingEchoed) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("tokens"), absl::StrCat(kToken1, "\n", kToken2, "\n"));
  auto access = ClientAccess::Create({.token_file = dir.Child("tokens")});
  ASSERT_TRUE(access.ok()) << access.status();
  const std::string peer = "ipv4:127.0.0.1:40000";
  EXPECT_EQ(*(*access)->Authenticate(absl::StrCat("Bearer ", kToken1), peer), "token 1");
  EXPECT_EQ(*(*access)->Authenticate(absl::StrCat("Bearer ", kToken2), peer), "token 2");
  const std::string wrong = "Bearer 0123456789abcdef0124";
  for (const std::string& authorization : {std::string(), std::string(kToken1), wrong, wrong + "5",
                                           absl::StrCat("Bearer ", kToken1, "x")}) {
    const absl::Status status = (*access)->Authenticate(authorization, peer).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << authorization;
    EXPECT_EQ(status.message().find("0123456789"), std::string::npos) << status;
  }

  auto open = ClientAccess::Create({});
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(*(*open)->Authenticate("", "ipv4:10.1.2.3:5555"), "peer 10.1.2.3");
  EXPECT_EQ(*(*open)->Authenticate("", "ipv6:[::1]:5555"), "peer ::1");
}

TEST(ClientAccessTest, SubmissionsPerCallerRefillWithTheClock) {
  auto now = std::chrono::steady_clock::time_point();
  ClientAccessOptions options = SubmitsPerMinute(3);
  options.now = [&] { return now; };
  auto access = ClientAccess::Create(options);
  ASSERT_TRUE(access.ok());
  ClientAccess& limits = **access;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limits.AdmitSubmission("token 1").ok()) << i;
  const absl::Status over = limits.AdmitSubmission("token 1");
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.message().find("--max-submits-per-minute"), std::string::npos);
  EXPECT_TRUE(limits.AdmitSubmission("token 2").ok()) << "another caller has its own bucket";
  now += std::chrono::seconds(19);  // a third of a minute, less a second: not quite one back
  EXPECT_FALSE(limits.AdmitSubmission("token 1").ok());
  now += std::chrono::seconds(2);
  EXPECT_TRUE(limits.AdmitSubmission("token 1").ok());
  EXPECT_FALSE(limits.AdmitSubmission("token 1").ok());
  now += std::chrono::minutes(10);  // a full bucket holds no more than the burst
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limits.AdmitSubmission("token 1").ok()) << i;
  EXPECT_FALSE(limits.AdmitSubmission("token 1").ok());

  auto unlimited = ClientAccess::Create(SubmitsPerMinute(0));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*unlimited)->AdmitSubmission("peer 127.0.0.1").ok());
  EXPECT_FALSE(ClientAccess::Create(SubmitsPerMinute(-1)).ok());
}

}  // namespace
}  // namespace qshard
