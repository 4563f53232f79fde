// Certificates for the TLS tests, made at run time by scripts/make-dev-certs (openssl): a CA,
// a coordinator certificate for localhost/127.0.0.1, a worker client certificate and a token.
#pragma once

#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "remote/transport_security.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard::testing {

struct DevCerts {
  std::string dir;

  // Tests run from the source root (cmake/QshardTargets.cmake).
  bool Make() const { return std::system(("scripts/make-dev-certs '" + dir + "' >/dev/null").c_str()) == 0; }
  std::string ca() const { return dir + "/ca.crt"; }
  TlsFiles Coordinator() const { return {dir + "/coordinator.crt", dir + "/coordinator.key", ca()}; }
  TlsFiles Worker() const { return {dir + "/worker.crt", dir + "/worker.key", ca()}; }
  std::string token() const { return std::string(absl::StripAsciiWhitespace(ReadFileBytes(dir + "/token"))); }
};

}  // namespace qshard::testing
