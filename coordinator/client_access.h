// Who may call the JobService and how often one caller may submit: bearer tokens listed in the
// coordinator's --token-file (compared in constant time, never logged or echoed) and a token
// bucket per caller on SubmitJob. Clients send "authorization: Bearer TOKEN" metadata.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"

namespace qshard {

inline constexpr char kAuthorizationKey[] = "authorization";  // gRPC metadata keys are lower case
inline constexpr char kBearerPrefix[] = "Bearer ";

// The tokens of a token file: one per line; blank lines and lines starting with '#' are
// skipped. A token is at least 16 printable ASCII characters without spaces. Errors name the
// file and line, never the line's text.
absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path, const std::string& flag);

struct ClientAccessOptions {
  std::string token_file;       // empty: no token needed (callers are told apart by address)
  int submits_per_minute = 60;  // per caller, in bursts of up to this many; 0: unlimited
  std::function<std::chrono::steady_clock::time_point()> now = std::chrono::steady_clock::now;
};

class ClientAccess {
 public:
  static absl::StatusOr<std::unique_ptr<ClientAccess>> Create(const ClientAccessOptions& options);

  // The caller's name for rate limits and logs ("token 2" for the file's second token, or
  // "peer HOST" without tokens); UNAUTHENTICATED when a token is needed and missing or wrong.
  absl::StatusOr<std::string> Authenticate(const grpc::CallbackServerContext& context) const;
  absl::StatusOr<std::string> Authenticate(const std::string& authorization, const std::string& peer) const;

  // Takes one submission from the caller's bucket: RESOURCE_EXHAUSTED when it is empty.
  absl::Status AdmitSubmission(const std::string& caller);

 private:
  explicit ClientAccess(const ClientAccessOptions& options) : options_(options) {}

  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point updated;
  };

  ClientAccessOptions options_;
  std::vector<std::string> tokens_;
  std::mutex mutex_;
  std::map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace qshard
