// Raw gRPC calls for tests: a unary call of any method with hand-encoded bytes (unknown
// methods, services the tree has no generated stub for), and grpc.health.v1 Check (remote/health_check.h).
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "remote/health_check.h"

namespace qshard::testing {

// Byte buffers of a raw gRPC call, as strings.
inline std::string BufferBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes;
}

inline grpc::Status CallRaw(grpc::Channel& channel, const std::string& method, const std::string& request,
                            std::string* response_bytes = nullptr) {
  grpc::GenericStub stub(std::shared_ptr<grpc::Channel>(&channel, [](grpc::Channel*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &in, &out, [&](grpc::Status s) { done.set_value(s); });
  const grpc::Status status = done.get_future().get();
  if (status.ok() && response_bytes != nullptr) *response_bytes = BufferBytes(out);
  return status;
}

// grpc.health.v1 Check of `service`: "SERVING", "NOT_SERVING", or the failed call's code
// number ("5" is NOT_FOUND: a service never set).
inline std::string HealthOf(grpc::Channel& channel, const std::string& service) {
  const absl::StatusOr<std::string> health = CheckHealth(channel, service, std::chrono::seconds(10));
  return health.ok() ? *health : std::to_string(static_cast<int>(health.status().code()));
}

}  // namespace qshard::testing
