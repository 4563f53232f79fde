// qshard health: asks a server's grpc.health.v1 whether a service is serving, and exits 0 only
// if it is. Kubernetes runs it inside the container as the exec probe on the loopback-only
// `--health-listen` port (docs/operations.md), since plaintext stays on loopback.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "remote/health_check.h"
#include "remote/transport_security.h"
#include "tools/qshard/command.h"

namespace qshard::cli {
namespace {

struct HealthFlags {
  std::string address;
  std::string service;
  double timeout_seconds = 2.0;
};

absl::Status RunHealth(const HealthFlags& flags) {
  QSHARD_RETURN_IF_ERROR(CheckPlaintextAllowed(flags.address, "--address", /*insecure=*/false,
                                               [](const std::string&) {}));
  auto channel = grpc::CreateChannel(flags.address, grpc::InsecureChannelCredentials());
  QSHARD_ASSIGN_OR_RETURN(
      const std::string health,
      CheckHealth(*channel, flags.service,
                  std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_seconds * 1000))));
  std::cout << (flags.service.empty() ? "server" : flags.service) << ": " << health << "\n";
  if (health != "SERVING") return absl::UnavailableError(absl::StrCat(flags.service, " is ", health));
  return absl::OkStatus();
}

}  // namespace

void RegisterHealth(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<HealthFlags>();
  CLI::App* app = root.add_subcommand("health", "Check a server's grpc.health.v1 (exit 0 only when serving)");
  app->add_option("--address", flags->address, "The --health-listen address, e.g. 127.0.0.1:8081")->required();
  app->add_option("--service", flags->service, "Service to ask for (default: the server as a whole)");
  app->add_option("--timeout-seconds", flags->timeout_seconds, "Give up after this long")->capture_default_str();
  commands.push_back({app, [flags] { return RunHealth(*flags); }});
}

}  // namespace qshard::cli
