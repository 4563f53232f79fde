#include "metrics/metrics_server.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                                     std::shared_ptr<MetricsRegistry> metrics,
                                                                     const std::string& flag) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size())
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", listen, "' is not host:port"));
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->metrics_ = std::move(metrics);
  try {  // civetweb reports a failed bind by throwing; nothing else here throws
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot listen on ", listen, ": ", e.what()));
  }
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot listen on ", listen));
  server->exposer_->RegisterCollectable(server->metrics_);
  server->address_ = absl::StrCat(listen.substr(0, colon), ":", ports.front());
  return server;
}

}  // namespace qshard
