// The service over TLS as separate processes on loopback: a coordinator with TLS, mutual TLS
// for its workers and bearer tokens runs a job on a `qshard worker` that presents a
// certificate from the CA, for a `submit` that sends a token; calls with no token, a wrong
// token or plaintext are refused, and the token appears in no process's output or log.
// Certificates are made at run time (scripts/make-dev-certs). Every wait is bounded.
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qshard.grpc.pb.h"
#include "tests/coordinator/child_process.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/remote/dev_certs.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using testing::DevCerts;
using Process = testing::ChildProcess;
using testing::ReadFileBytes;

TEST(SecureServiceProcessTest, TlsJobWithTokensAndMutualTls) {
  const std::string data = fs::canonical("../shared/data").string();
  ASSERT_TRUE(fs::exists(data + "/tinystories-656k/model.safetensors"));
  testing::ScopedTempDir dir;
  const DevCerts certs{dir.Child("pki")};
  ASSERT_TRUE(certs.Make());
  const std::string token = certs.token();
  ASSERT_GE(token.size(), 16u);
  testing::WriteTextFile(dir.Child("tokens"), absl::StrCat("# release tooling\n", token, "\n"));
  testing::WriteTextFile(dir.Child("wrong-token"), std::string(token.rbegin(), token.rend()) + "\n");
  fs::create_directories(dir.Child("outputs"));
  const TlsFiles server = certs.Coordinator(), worker_tls = certs.Worker();

  Process coordinator({"coordinator", "--listen", "127.0.0.1:0", "--state-dir", dir.Child("state"), "--allowed-root",
                       data, "--allowed-root", dir.Child("outputs"), "--json", "--workers", "1",
                       "--worker-wait-seconds", "60", "--tls-cert", server.cert, "--tls-key", server.key, "--tls-ca",
                       server.ca, "--token-file", dir.Child("tokens")},
                      dir.Child("coordinator"));
  const std::string address = testing::AwaitListening(coordinator);
  ASSERT_FALSE(address.empty());
  Process worker({"worker", "--coordinator", address, "--name", "w0", "--threads", "1", "--retry-seconds", "10",
                  "--tls-ca", worker_tls.ca, "--tls-cert", worker_tls.cert, "--tls-key", worker_tls.key},
                 dir.Child("worker"));

  // The same refusal through the API: no token, a wrong one.
  auto credentials = MakeChannelCredentials(address, {"", "", certs.ca()}, false, [](const std::string&) {});
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  auto stub = v1::JobService::NewStub(grpc::CreateChannel(address, *credentials));
  for (const std::string& authorization : {std::string(), "Bearer " + std::string(token.rbegin(), token.rend())}) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    v1::ListJobsResponse response;
    EXPECT_EQ(stub->ListJobs(&context, {}, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  const std::vector<std::string> tls_client = {"--coordinator", address, "--tls-ca", certs.ca()};
  const auto run = [&](std::vector<std::string> args, const std::string& name, int seconds = 30) {
    Process process(args, dir.Child(name));
    return process.Wait(std::chrono::seconds(seconds));
  };
  const auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const std::vector<std::string> job = {
      "--model", data + "/tinystories-656k", "--out", dir.Child("outputs/tls"), "--method", "gptq", "--bits", "4",
      "--group-size", "32", "--calib-text", data + "/wikitext-2-raw/wiki.test.raw", "--nsamples", "2",
      "--calib-shards", "2", "--seqlen", "32", "--threads", "1"};
  EXPECT_EQ(run(with(with({"submit"}, tls_client), job), "submit-no-token"), 1);
  EXPECT_NE(ReadFileBytes(dir.Child("submit-no-token.err")).find("no bearer token"), std::string::npos)
      << ReadFileBytes(dir.Child("submit-no-token.err"));
  EXPECT_EQ(run(with(with({"jobs"}, tls_client), {"--token-file", dir.Child("wrong-token")}), "jobs-wrong-token"), 1);
  EXPECT_NE(ReadFileBytes(dir.Child("jobs-wrong-token.err")).find("not one the coordinator accepts"),
            std::string::npos)
      << ReadFileBytes(dir.Child("jobs-wrong-token.err"));
  EXPECT_EQ(run({"jobs", "--coordinator", address, "--token-file", dir.Child("tokens")}, "jobs-plaintext"), 1);

  const std::vector<std::string> authorized = with(tls_client, {"--token-file", dir.Child("tokens")});
  ASSERT_EQ(run(with(with({"submit", "--wait", "--json"}, authorized), job), "submit", 120), 0)
      << ReadFileBytes(dir.Child("submit.err")) << ReadFileBytes(dir.Child("worker.err"));
  EXPECT_EQ(nlohmann::json::parse(ReadFileBytes(dir.Child("submit.out")))["state"], "SUCCEEDED");
  EXPECT_TRUE(fs::exists(dir.Child("outputs/tls/model.safetensors")));
  ASSERT_EQ(run(with({"jobs", "--json"}, authorized), "jobs"), 0) << ReadFileBytes(dir.Child("jobs.err"));
  EXPECT_NE(ReadFileBytes(dir.Child("jobs.out")).find("job-1"), std::string::npos);

  coordinator.Kill(SIGTERM);
  worker.Kill(SIGTERM);
  EXPECT_NE(ReadFileBytes(dir.Child("worker.err")).find("connected"), std::string::npos);
  // Every process's stdout and stderr, the coordinator's log included, is free of the token.
  int logs = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    const std::string ext = entry.path().extension();
    if (ext != ".out" && ext != ".err") continue;
    ++logs;
    EXPECT_EQ(ReadFileBytes(entry.path()).find(token), std::string::npos) << entry.path() << " shows the token";
  }
  EXPECT_GE(logs, 12);
  EXPECT_FALSE(ReadFileBytes(dir.Child("coordinator.err")).empty()) << "the coordinator logged nothing to check";
}

}  // namespace
}  // namespace qshard
