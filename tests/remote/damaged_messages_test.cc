// Tasks and results (solutions and weights included) cross the Connect stream in chunks whose
// last carries the whole message's CRC-32 (remote/wire.h). A damaged result ends the worker's
// lease and the call fails naming the worker and its task; a damaged task ends the worker's
// session naming the coordinator. Each side is played by hand over loopback gRPC.
#include <thread>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "remote/wire.h"
#include "remote/worker_pool.h"
#include "remote/worker_session.h"

namespace qshard {
namespace {

// `service` on a free loopback port, stored in `port`.
std::unique_ptr<grpc::Server> Serve(grpc::Service& service, int& port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  return builder.BuildAndStart();
}

std::shared_ptr<grpc::Channel> Dial(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
}

TEST(DamagedMessagesTest, ADamagedResultFailsTheCallNamingTheWorkerAndTheTask) {
  WorkerPool pool;
  int port = 0;
  std::unique_ptr<grpc::Server> server = Serve(pool, port);

  // A worker that answers its first task with a result whose CRC-32 does not match.
  std::thread worker([port] {
    auto stub = v1::WorkerService::NewStub(Dial(port));
    grpc::ClientContext context;
    auto stream = stub->Connect(&context);
    v1::WorkerFrame hello;
    hello.mutable_hello()->set_name("w7");
    ASSERT_TRUE(stream->Write(hello));
    v1::CoordinatorFrame frame;
    while (stream->Read(&frame) && !frame.task().last()) {
    }
    v1::WorkerTaskResult result;
    result.set_message(std::string(3000, 'r'));
    std::vector<v1::Chunk> chunks = wire::Cut(result, frame.task().message_id(), 1000).value();
    chunks[1].mutable_data()->at(7) ^= 0x20;
    for (const v1::Chunk& chunk : chunks) {
      v1::WorkerFrame out;
      *out.mutable_result() = chunk;
      stream->Write(out);
    }
    stream->WritesDone();
    while (stream->Read(&frame)) {
    }
    stream->Finish();
  });

  auto workers = pool.AwaitWorkers(1, std::chrono::seconds(20));
  ASSERT_TRUE(workers.ok()) << workers.status();
  const absl::Status status = workers->front()->Apply(2, GroupSolution());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;  // the worker is lost
  for (const char* named : {"worker w7", "apply task", "CRC-32 mismatch"})
    EXPECT_NE(status.message().find(named), std::string::npos) << status;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  worker.join();
}

// A coordinator that sends its worker one task with a damaged chunk, then waits for the
// worker to hang up.
class DamagingCoordinator : public v1::WorkerService::Service {
 public:
  grpc::Status Connect(grpc::ServerContext*,
                       grpc::ServerReaderWriter<v1::CoordinatorFrame, v1::WorkerFrame>* stream) override {
    v1::WorkerFrame frame;
    if (!stream->Read(&frame)) return grpc::Status::OK;  // the hello
    v1::WorkerTask task;
    task.mutable_apply()->mutable_solution()->add_reports()->set_name(std::string(500, 'x'));
    std::vector<v1::Chunk> chunks = wire::Cut(task, 1, 100).value();
    chunks[2].mutable_data()->at(3) ^= 0x01;
    for (const v1::Chunk& chunk : chunks) {
      v1::CoordinatorFrame out;
      *out.mutable_task() = chunk;
      stream->Write(out);
    }
    while (stream->Read(&frame)) {
    }
    return grpc::Status::OK;
  }
};

TEST(DamagedMessagesTest, ADamagedTaskEndsTheWorkersSession) {
  DamagingCoordinator coordinator;
  int port = 0;
  std::unique_ptr<grpc::Server> server = Serve(coordinator, port);
  WorkerSessionOptions options;
  options.hello.set_name("w1");
  options.heartbeat_ms = 50;
  const absl::Status status = RunWorkerSession(Dial(port), options);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  for (const char* named : {"a task from the coordinator arrived damaged", "CRC-32 mismatch"})
    EXPECT_NE(status.message().find(named), std::string::npos) << status;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace
}  // namespace qshard
