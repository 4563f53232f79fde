// The transport-security flags of every qshard gRPC end (`coordinator`, `worker` and the job
// clients), registered in one place so their names and meaning stay the same everywhere:
// --tls-cert, --tls-key, --tls-ca and --insecure (remote/transport_security.h).
#pragma once

#include "CLI/CLI.hpp"
#include "remote/transport_security.h"

namespace qshard::cli {

enum class TlsRole { kServer, kClient };

void AddSecurityFlags(CLI::App& app, TlsRole role, TlsFiles& tls, bool& insecure);

}  // namespace qshard::cli
