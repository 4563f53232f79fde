// The workers' data plane over loopback gRPC: an owner pulls tree nodes from two holders (and
// its own from memory) in small slices and gets the bytes of the whole values reduced along the
// tree; a node is served once; a holder that is gone, or whose stream breaks after some slices,
// or that hangs past the stall timeout, is named as the unreachable source; plaintext stays on
// loopback.
#include "remote/statistics_service.h"

#include <cstring>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/remote/random_statistics.h"
#include "qshard.grpc.pb.h"
#include "remote/statistics_slices.h"
#include "tests/remote/dev_certs.h"

namespace qshard {
namespace {

GroupStatistics RandomStatistics(int64_t dim, std::mt19937& rng) {
  GroupStatistics statistics;
  statistics.inputs = testing::RandomSum(dim, rng);
  return statistics;
}

bool SameBytes(const HessianSum& a, const HessianSum& b) {
  return a.dim == b.dim && a.tokens == b.tokens && a.abs_max == b.abs_max && a.sum.size() == b.sum.size() &&
         std::memcmp(a.sum.data(), b.sum.data(), a.sum.size() * sizeof(double)) == 0;
}

void Log(const std::string&) {}

// One holder: its store and its server, slicing at 4 rows of the 29-wide sums.
struct Holder {
  explicit Holder(std::atomic<uint64_t>* served, const TlsFiles& tls = {}, const std::string& peer_name = "") {
    options.max_slice_bytes = 4 * 29 * sizeof(double);
    options.bytes_served = served;
    options.tls = tls;
    options.peer_name = peer_name;
    server = *StatisticsServer::Start(store, options, Log);
  }
  DataPlaneOptions options;
  StatisticsStore store;
  std::unique_ptr<StatisticsServer> server;
};

TEST(StatisticsServiceTest, OwnerPullsAndReducesLikeTheWholeTree) {
  std::mt19937 rng(7);
  std::vector<ShardStatistics> nodes = {{0, 2, {RandomStatistics(29, rng), RandomStatistics(5, rng)}},
                                        {2, 1, {RandomStatistics(29, rng), RandomStatistics(5, rng)}},
                                        {3, 1, {RandomStatistics(29, rng), RandomStatistics(5, rng)}}};
  std::atomic<uint64_t> served = 0;
  Holder owner(&served), a(&served), b(&served);
  // Groups 4 and 7 collected at once; the owner holds [0,2), a holds [2,3), b holds [3,4).
  owner.store.HoldPartials({4, 7}, {nodes[0]});
  a.store.HoldPartials({4, 7}, {nodes[1]});
  b.store.HoldPartials({4, 7}, {nodes[2]});
  const std::vector<StatisticsSource> sources = {{b.server->address(), 3, 1},
                                                 {owner.server->address(), 0, 2},
                                                 {a.server->address(), 2, 1}};
  std::optional<size_t> unreachable;
  auto reduced = PullAndReduce(4, 4, sources, owner.options, owner.store, owner.server->address(), &unreachable);
  ASSERT_TRUE(reduced.ok()) << reduced.status();
  EXPECT_FALSE(unreachable.has_value());
  auto whole = ReduceShardTree(nodes, 4, 2);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(SameBytes(reduced->inputs, (*whole)[0].inputs));
  // Two holders' 29-row sums in 8 slices each, plus headers; the owner's own node stays local.
  EXPECT_GT(served.load(), 2 * 29 * 29 * sizeof(double));
  EXPECT_LT(served.load(), 2 * 29 * 29 * sizeof(double) + 2 * 1024);

  // Group 7 is another pull; group 4's nodes were served once and are gone.
  auto other = PullAndReduce(7, 4, sources, owner.options, owner.store, owner.server->address(), &unreachable);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(SameBytes(other->inputs, (*whole)[1].inputs));
  auto again = PullAndReduce(4, 4, sources, owner.options, owner.store, owner.server->address(), &unreachable);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound) << again.status();

  // The owner keeps the reduced group; a solver elsewhere reads it whole, sliced on the way.
  owner.store.HoldReduced(4, *reduced);
  auto pulled = PullReduced(4, owner.server->address(), a.options);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_TRUE(SameBytes(pulled->inputs, reduced->inputs));
  owner.store.Release(4);
  EXPECT_EQ(PullReduced(4, owner.server->address(), a.options).status().code(), absl::StatusCode::kNotFound);
}

TEST(StatisticsServiceTest, AHolderThatIsGoneIsTheUnreachableSource) {
  std::mt19937 rng(8);
  std::atomic<uint64_t> served = 0;
  Holder owner(&served);
  auto gone = std::make_unique<Holder>(&served);
  const std::string gone_address = gone->server->address();
  gone.reset();
  owner.store.HoldPartials({0}, {{0, 1, {RandomStatistics(29, rng)}}});
  std::optional<size_t> unreachable;
  auto reduced = PullAndReduce(0, 2, {{owner.server->address(), 0, 1}, {gone_address, 1, 1}}, owner.options,
                               owner.store, owner.server->address(), &unreachable);
  EXPECT_EQ(reduced.status().code(), absl::StatusCode::kUnavailable) << reduced.status();
  ASSERT_TRUE(unreachable.has_value());
  EXPECT_EQ(*unreachable, 1u);
}

// A holder that sends its header and one slice, then either fails (the stream breaks
// mid-pull) or hangs, as a stopped process would, until the puller gives up and cancels.
class FaultyHolder : public v1::StatisticsService::Service {
 public:
  explicit FaultyHolder(bool hangs) : hangs_(hangs) {}
  grpc::Status Pull(grpc::ServerContext* context, const v1::PullRequest*,
                    grpc::ServerWriter<v1::StatisticsPiece>* out) override {
    std::mt19937 rng(9);
    SliceWriter writer(std::make_shared<const GroupStatistics>(RandomStatistics(29, rng)), 4 * 29 * sizeof(double));
    v1::StatisticsPiece piece;
    for (int i = 0; i < 2 && writer.Next(piece); ++i) out->Write(piece);
    if (!hangs_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the holder went away");
    while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return grpc::Status::CANCELLED;
  }

 private:
  const bool hangs_;
};

// Pulls a group from a good holder and `faulty`: the faulty one must be named unreachable.
absl::Status PullWithAFaultyHolder(FaultyHolder& faulty, std::chrono::milliseconds stall_timeout) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&faulty);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  std::mt19937 rng(10);
  std::atomic<uint64_t> served = 0;
  Holder good(&served);
  good.store.HoldPartials({0}, {{0, 1, {RandomStatistics(29, rng)}}});
  DataPlaneOptions options = good.options;
  options.stall_timeout = stall_timeout;
  StatisticsStore empty;
  std::optional<size_t> unreachable;
  auto reduced = PullAndReduce(0, 2, {{good.server->address(), 0, 1}, {"127.0.0.1:" + std::to_string(port), 1, 1}},
                               options, empty, "", &unreachable);
  EXPECT_TRUE(unreachable.has_value() && *unreachable == 1u);
  server->Shutdown(std::chrono::system_clock::now());
  return reduced.status();
}

TEST(StatisticsServiceTest, AStreamBrokenMidPullNamesItsHolder) {
  FaultyHolder breaking(/*hangs=*/false);
  const absl::Status status = PullWithAFaultyHolder(breaking, std::chrono::seconds(120));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

TEST(StatisticsServiceTest, AHolderThatHangsMidPullIsNamedAfterTheStallTimeout) {
  FaultyHolder hanging(/*hangs=*/true);
  const absl::Status status = PullWithAFaultyHolder(hanging, std::chrono::milliseconds(300));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "no data from the holder")) << status;
}

// Workers sharing one certificate (scripts/make-dev-certs: SAN qshard-worker) pull from each
// other over mutual TLS; a peer without a client certificate is refused.
TEST(StatisticsServiceTest, MutualTlsBetweenWorkers) {
  testing::ScopedTempDir dir;
  const testing::DevCerts certs{dir.path()};
  ASSERT_TRUE(certs.Make());
  std::mt19937 rng(11);
  std::atomic<uint64_t> served = 0;
  Holder owner(&served, certs.Worker(), "qshard-worker"), holder(&served, certs.Worker(), "qshard-worker");
  const GroupStatistics value = RandomStatistics(29, rng);
  holder.store.HoldReduced(3, value);
  auto pulled = PullReduced(3, holder.server->address(), owner.options);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_TRUE(SameBytes(pulled->inputs, value.inputs));

  // TLS that verifies the holder but presents no certificate: refused by the service.
  grpc::SslCredentialsOptions verify_only;
  verify_only.pem_root_certs = testing::ReadFileBytes(certs.ca());
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride("qshard-worker");
  auto stub = v1::StatisticsService::NewStub(
      grpc::CreateCustomChannel(holder.server->address(), grpc::SslCredentials(verify_only), arguments));
  grpc::ClientContext context;
  v1::PullRequest request;
  request.set_group(3);
  auto reader = stub->Pull(&context, request);
  v1::StatisticsPiece piece;
  EXPECT_FALSE(reader->Read(&piece));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  DataPlaneOptions plaintext;
  EXPECT_FALSE(PullReduced(3, holder.server->address(), plaintext).ok());
}

TEST(StatisticsServiceTest, PlaintextOnlyOnLoopback) {
  StatisticsStore store;
  DataPlaneOptions options;
  options.listen = "0.0.0.0:0";
  auto server = StatisticsServer::Start(store, options, Log);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("--data-listen"), std::string::npos) << server.status();
}

}  // namespace
}  // namespace qshard
