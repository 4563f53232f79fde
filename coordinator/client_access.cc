#include "coordinator/client_access.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/env.h"
#include "core/status.h"
#include "remote/transport_security.h"

namespace qshard {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr size_t kMaxBuckets = 4096;  // idle callers' full buckets are dropped beyond this

// Equal without an early exit, so the time taken does not tell how much of a guess matched:
// every byte of the guess `a` is compared (against `b` cyclically when the lengths differ).
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (b.empty()) return a.empty();
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % b.size()]);
  return diff == 0;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path, const std::string& flag) {
  absl::StatusOr<std::string> text = Env::Default()->ReadFileToString(path);
  if (!text.ok()) return WithContext(text.status(), flag);
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    const bool printable = std::all_of(line.begin(), line.end(), [](char c) { return c > ' ' && c <= '~'; });
    if (!printable || line.size() < kMinTokenLength)
      return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " line ", line_number, ": a token is at least ",
                                                     kMinTokenLength, " printable characters without spaces"));
    tokens.emplace_back(line);
  }
  if (tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " holds no token"));
  return tokens;
}

absl::StatusOr<std::unique_ptr<ClientAccess>> ClientAccess::Create(const ClientAccessOptions& options) {
  if (options.submits_per_minute < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("--max-submits-per-minute: ", options.submits_per_minute, " is negative"));
  std::unique_ptr<ClientAccess> access(new ClientAccess(options));
  if (!options.token_file.empty()) {
    QSHARD_ASSIGN_OR_RETURN(access->tokens_, ReadTokenFile(options.token_file, "--token-file"));
  }
  return access;
}

absl::StatusOr<std::string> ClientAccess::Authenticate(const grpc::CallbackServerContext& context) const {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(kAuthorizationKey);
  const std::string authorization = found == metadata.end() ? "" : std::string(found->second.data(), found->second.size());
  return Authenticate(authorization, context.peer());
}

absl::StatusOr<std::string> ClientAccess::Authenticate(const std::string& authorization, const std::string& peer) const {
  if (tokens_.empty()) return absl::StrCat("peer ", HostOf(peer));
  if (authorization.empty())
    return absl::UnauthenticatedError("authorization: no bearer token (give the client --token-file)");
  if (!absl::StartsWith(authorization, kBearerPrefix))
    return absl::UnauthenticatedError("authorization: not a bearer token");
  const std::string token = authorization.substr(sizeof(kBearerPrefix) - 1);
  int match = -1;
  for (size_t i = 0; i < tokens_.size(); ++i)  // every token is compared, whichever matches
    if (ConstantTimeEquals(token, tokens_[i])) match = static_cast<int>(i);
  if (match < 0) return absl::UnauthenticatedError("authorization: the bearer token is not one the coordinator accepts");
  return absl::StrCat("token ", match + 1);
}

absl::Status ClientAccess::AdmitSubmission(const std::string& caller) {
  const int rate = options_.submits_per_minute;
  if (rate == 0) return absl::OkStatus();
  const auto now = options_.now();
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, fresh] = buckets_.try_emplace(caller, Bucket{static_cast<double>(rate), now});
  Bucket& bucket = it->second;
  const double minutes = std::chrono::duration<double, std::ratio<60>>(now - bucket.updated).count();
  bucket.tokens = std::min<double>(rate, bucket.tokens + minutes * rate);
  bucket.updated = now;
  if (bucket.tokens < 1)
    return absl::ResourceExhaustedError(absl::StrCat("SubmitJob: ", caller, " is over --max-submits-per-minute ", rate,
                                                     "; retry in ", static_cast<int>((1 - bucket.tokens) * 60 / rate) + 1,
                                                     " s"));
  bucket.tokens -= 1;
  if (fresh && buckets_.size() > kMaxBuckets)
    std::erase_if(buckets_, [&](const auto& entry) {
      const double idle = std::chrono::duration<double, std::ratio<60>>(now - entry.second.updated).count();
      return entry.second.tokens + idle * rate >= rate;
    });
  return absl::OkStatus();
}

}  // namespace qshard
