#include "metrics/grpc_server_metrics.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace qshard {
namespace {

class CountingInterceptor : public grpc::experimental::Interceptor {
 public:
  CountingInterceptor(GrpcServerMetrics& metrics, std::string method) : metrics_(metrics), method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS))
      metrics_.Count(method_, methods->GetSendStatus().error_code());
    methods->Proceed();
  }

 private:
  GrpcServerMetrics& metrics_;
  const std::string method_;
};

class CountingFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CountingFactory(GrpcServerMetrics& metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new CountingInterceptor(metrics_, info->method() == nullptr ? "" : info->method());
  }

 private:
  GrpcServerMetrics& metrics_;
};

}  // namespace

GrpcServerMetrics::GrpcServerMetrics(MetricsRegistry& metrics, const std::vector<std::string>& methods) {
  auto& family = metrics.Counter("qshard_grpc_requests_total",
                                 "gRPC requests the server finished, by service, method and status code");
  for (const std::string& full : methods) {
    const size_t slash = full.rfind('/');
    by_method_[full] = CodeCounters(family, {{"service", full.substr(1, slash - 1)}, {"method", full.substr(slash + 1)}});
  }
  other_ = CodeCounters(family, {{"service", "other"}, {"method", "other"}});
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcServerMetrics::InterceptorFactory() {
  return std::make_unique<CountingFactory>(*this);
}

void GrpcServerMetrics::Count(const std::string& full_method, grpc::StatusCode code) {
  const auto found = by_method_.find(full_method);
  (found == by_method_.end() ? other_ : found->second).Count(code);
}

std::vector<std::string> MethodsOfService(const std::string& service) {
  std::vector<std::string> methods;
  const google::protobuf::ServiceDescriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
  if (descriptor == nullptr) return methods;
  for (int i = 0; i < descriptor->method_count(); ++i)
    methods.push_back(absl::StrCat("/", service, "/", descriptor->method(i)->name()));
  return methods;
}

}  // namespace qshard
