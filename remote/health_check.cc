#include "remote/health_check.h"

#include <future>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"

namespace qshard {

absl::StatusOr<std::string> CheckHealth(grpc::Channel& channel, const std::string& service,
                                        std::chrono::milliseconds timeout) {
  if (service.size() > 127) return absl::InvalidArgumentError("--service: a name of at most 127 bytes");
  // HealthCheckRequest{service = 1}: tag 0x0a, a one-byte length, the name.
  const std::string request = service.empty() ? "" : std::string("\x0a") + static_cast<char>(service.size()) + service;
  grpc::GenericStub stub(std::shared_ptr<grpc::Channel>(&channel, [](grpc::Channel*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &in, &out,
                 [&](grpc::Status status) { done.set_value(status); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok())
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("health check of '", service, "': ", status.error_message()));
  std::vector<grpc::Slice> slices;
  (void)out.Dump(&slices);
  std::string response;
  for (const grpc::Slice& s : slices) response.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status = 1}: SERVING is 1, NOT_SERVING 2.
  if (response == std::string("\x08\x01")) return std::string("SERVING");
  if (response == std::string("\x08\x02")) return std::string("NOT_SERVING");
  return absl::DataLossError(absl::StrCat("health check of '", service, "': an unexpected response"));
}

}  // namespace qshard
