// qshard_grpc_requests_total{service, method, code}: every RPC a gRPC server finished, counted
// by a server interceptor. Labels stay bounded: the methods named at construction each get a
// series per status code from start-up (value 0); any other method counts as
// service="other", method="other".
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"
#include "metrics/metrics_registry.h"

namespace qshard {

class GrpcServerMetrics {
 public:
  // `methods`: full method names, "/package.Service/Method".
  GrpcServerMetrics(MetricsRegistry& metrics, const std::vector<std::string>& methods);

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators; this object must outlive
  // the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  void Count(const std::string& full_method, grpc::StatusCode code);

 private:
  std::map<std::string, CodeCounters> by_method_;
  CodeCounters other_;
};

// The full names of every method of the generated service `service` ("package.Service").
std::vector<std::string> MethodsOfService(const std::string& service);

}  // namespace qshard
