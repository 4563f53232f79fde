// TLS and mutual TLS between the WorkerService and workers, with certificates made at run
// time: a worker with a certificate from the right CA registers; one without a certificate is
// refused with UNAUTHENTICATED, one from another CA (or trusting another CA) never registers;
// plaintext is refused off loopback; bad flag combinations and files name the flag; the
// health-only port answers probes.
#include <thread>

#include "grpcpp/create_channel.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "remote/health_server.h"
#include "remote/transport_security.h"
#include "remote/worker_pool.h"
#include "remote/worker_session.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/remote/dev_certs.h"
#include "tests/remote/raw_grpc.h"

namespace qshard {
namespace {

using testing::DevCerts;
using testing::ScopedTempDir;

const auto kNoLog = [](const std::string&) {};

TEST(TransportSecurityTest, Addresses) {
  EXPECT_EQ(HostOf("ipv4:127.0.0.1:5555"), "127.0.0.1");
  EXPECT_EQ(HostOf("ipv6:[::1]:80"), "::1");
  EXPECT_EQ(HostOf("qshard-coordinator:7700"), "qshard-coordinator");
  EXPECT_EQ(BoundAddress("0.0.0.0:0", 4242), "0.0.0.0:4242");
  EXPECT_EQ(BoundAddress("[::]:0", 5), "[::]:5");
  EXPECT_EQ(BoundAddress("unix:/tmp/q.sock", 0), "unix:/tmp/q.sock");
  EXPECT_TRUE(IsLoopbackAddress("ipv4:127.0.0.1:5555"));
  EXPECT_FALSE(IsLoopbackAddress("ipv4:10.0.0.1:5555"));
}

TEST(TransportSecurityTest, PlaintextOnlyOnLoopbackUnlessInsecure) {
  std::vector<std::string> log;
  const auto record = [&](const std::string& line) { log.push_back(line); };
  EXPECT_TRUE(CheckPlaintextAllowed("127.0.0.1:7700", "--listen", false, record).ok());
  EXPECT_TRUE(log.empty());
  const absl::Status refused = CheckPlaintextAllowed("10.0.0.1:7700", "--coordinator", false, record);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("--coordinator"), std::string::npos);
  EXPECT_NE(refused.message().find("--insecure"), std::string::npos);
  EXPECT_TRUE(CheckPlaintextAllowed("10.0.0.1:7700", "--listen", true, record).ok());
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("WARNING"), std::string::npos);
  // A TLS channel needs no exception; a plaintext one to a remote host does.
  EXPECT_FALSE(MakeChannelCredentials("10.0.0.1:7700", {}, false, kNoLog).ok());
  EXPECT_FALSE(MakeServerCredentials("0.0.0.0:7700", {}, false, kNoLog).ok());
}

TEST(TransportSecurityTest, BadFlagsAndFilesNameTheFlag) {
  ScopedTempDir dir;
  DevCerts certs{dir.Child("pki")};
  ASSERT_TRUE(certs.Make());
  const TlsFiles good = certs.Coordinator();
  const auto message = [](const auto& result) { return std::string(result.status().message()); };
  EXPECT_NE(message(MakeServerCredentials("127.0.0.1:0", {good.cert, "", ""}, false, kNoLog)).find("--tls-key"),
            std::string::npos);
  EXPECT_NE(message(MakeServerCredentials("127.0.0.1:0", {"", "", good.ca}, false, kNoLog)).find("--tls-ca"),
            std::string::npos);
  EXPECT_NE(message(MakeChannelCredentials("127.0.0.1:0", {"", good.key, ""}, false, kNoLog)).find("--tls-cert"),
            std::string::npos);
  testing::WriteTextFile(dir.Child("not-pem"), "hello");
  EXPECT_NE(message(MakeServerCredentials("127.0.0.1:0", {good.cert, good.key, dir.Child("not-pem")}, false, kNoLog))
                .find("--tls-ca"),
            std::string::npos);
  EXPECT_NE(message(MakeChannelCredentials("127.0.0.1:0", {"", "", dir.Child("missing")}, false, kNoLog))
                .find("--tls-ca"),
            std::string::npos);
  EXPECT_TRUE(MakeServerCredentials("0.0.0.0:0", good, false, kNoLog).ok());  // TLS may listen anywhere
}

class MutualTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.Make());
    ASSERT_TRUE(rogue_.Make());  // another CA, with its own worker certificate
    WorkerPoolOptions options;
    options.require_client_certificate = true;
    pool_ = std::make_unique<WorkerPool>(options);
    auto credentials = MakeServerCredentials("127.0.0.1:0", certs_.Coordinator(), false, kNoLog);
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    builder.RegisterService(pool_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  // One worker session with `tls`, run to its end.
  absl::Status Session(const TlsFiles& tls, const std::string& name) {
    auto credentials = MakeChannelCredentials(Address(), tls, false, kNoLog);
    if (!credentials.ok()) return credentials.status();
    WorkerSessionOptions options;
    options.hello.set_name(name);
    options.hello.set_threads(1);
    return RunWorkerSession(grpc::CreateChannel(Address(), *credentials), options);
  }
  std::string Address() const { return "127.0.0.1:" + std::to_string(port_); }

  ScopedTempDir dir_;
  DevCerts certs_{dir_.Child("pki")}, rogue_{dir_.Child("rogue")};
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(MutualTlsTest, OnlyWorkersWithACertificateFromTheCaRegister) {
  const absl::Status no_certificate = Session({"", "", certs_.ca()}, "anonymous");
  EXPECT_EQ(no_certificate.code(), absl::StatusCode::kUnauthenticated) << no_certificate;
  EXPECT_NE(no_certificate.message().find("--tls-cert"), std::string::npos);

  const TlsFiles wrong_ca = {rogue_.Worker().cert, rogue_.Worker().key, certs_.ca()};
  EXPECT_FALSE(Session(wrong_ca, "rogue").ok());
  const TlsFiles trusts_another_ca = {certs_.Worker().cert, certs_.Worker().key, rogue_.ca()};
  EXPECT_FALSE(Session(trusts_another_ca, "misconfigured").ok());
  EXPECT_FALSE(RunWorkerSession(grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()), {}).ok());
  EXPECT_TRUE(pool_->Workers().empty()) << "a refused worker registered";

  absl::Status good = absl::UnknownError("not run");
  std::thread worker([&] { good = Session(certs_.Worker(), "good"); });
  auto registered = pool_->AwaitWorkers(1, std::chrono::seconds(30));
  ASSERT_TRUE(registered.ok()) << registered.status();
  ASSERT_EQ(pool_->Workers().size(), 1u);
  EXPECT_EQ(pool_->Workers()[0].name(), "good");
  registered->clear();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  worker.join();
  server_.reset();
}

TEST(HealthServerTest, PlaintextOffLoopbackNeedsInsecure) {
  std::vector<std::string> log;
  const auto keep = [&](const std::string& line) { log.push_back(line); };
  auto refused = HealthServer::Start("0.0.0.0:0", /*insecure=*/false, keep);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_NE(refused.status().message().find("--health-listen"), std::string::npos) << refused.status();
  auto allowed = HealthServer::Start("0.0.0.0:0", /*insecure=*/true, keep);
  EXPECT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_EQ(log.size(), 1u);  // the warning
}

TEST(HealthServerTest, AnswersProbesOnPlaintext) {
  auto health = HealthServer::Start("127.0.0.1:0", /*insecure=*/false, [](const std::string&) {});
  ASSERT_TRUE(health.ok()) << health.status();
  auto channel = grpc::CreateChannel((*health)->address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(testing::HealthOf(*channel, ""), "SERVING");
  EXPECT_EQ(testing::HealthOf(*channel, "qshard.worker"), std::to_string(grpc::StatusCode::NOT_FOUND));
  (*health)->SetServing("qshard.worker", true);
  EXPECT_EQ(testing::HealthOf(*channel, "qshard.worker"), "SERVING");
  (*health)->SetServing("qshard.worker", false);
  EXPECT_EQ(testing::HealthOf(*channel, "qshard.worker"), "NOT_SERVING");
  EXPECT_EQ(testing::CallRaw(*channel, "/qshard.v1.JobService/ListJobs", "").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace qshard
