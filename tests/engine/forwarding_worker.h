// A WorkerClient that passes every call on to another: tests derive from it and override the
// calls they count or disturb.
#pragma once

#include "engine/worker_client.h"

namespace qshard::testing {

class ForwardingWorker : public WorkerClient {
 public:
  explicit ForwardingWorker(WorkerClient& inner) : inner_(inner) {}

  absl::Status StartJob(const JobSpec& spec, int64_t seqlen, std::vector<int> shards) override {
    return inner_.StartJob(spec, seqlen, std::move(shards));
  }
  absl::Status BeginLayer(int layer) override { return inner_.BeginLayer(layer); }
  absl::Status AdoptShards(std::vector<int> shards) override { return inner_.AdoptShards(std::move(shards)); }
  absl::Status ReplayLayer(int layer, const std::vector<GroupSolution>& solutions) override {
    return inner_.ReplayLayer(layer, solutions);
  }
  absl::StatusOr<std::vector<ShardStatistics>> CollectStatistics(const std::vector<int>& groups,
                                                                 bool attention) override {
    return inner_.CollectStatistics(groups, attention);
  }
  std::string DataAddress() override { return inner_.DataAddress(); }
  absl::Status ReduceStatistics(int group, int shards, const std::vector<StatisticsSource>& sources,
                                std::optional<size_t>* unreachable) override {
    return inner_.ReduceStatistics(group, shards, sources, unreachable);
  }
  absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears,
                                      const GroupStatistics* statistics, const SharedGroupPart* shared) override {
    return inner_.Solve(group, linears, statistics, shared);
  }
  absl::StatusOr<SharedGroupPart> SolveShared(int group, const GroupStatistics* statistics) override {
    return inner_.SolveShared(group, statistics);
  }
  absl::StatusOr<std::vector<HeadsPart>> SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                    const GroupStatistics* statistics,
                                                    const SharedGroupPart& shared) override {
    return inner_.SolveHeads(group, ranges, statistics, shared);
  }
  absl::Status Apply(int group, const GroupSolution& solution) override { return inner_.Apply(group, solution); }
  absl::Status FinishLayer() override { return inner_.FinishLayer(); }
  absl::StatusOr<nlohmann::json> Validate(const JobSpec& spec) override { return inner_.Validate(spec); }
  std::string DeviceName() override { return inner_.DeviceName(); }

 protected:
  WorkerClient& inner_;
};

}  // namespace qshard::testing
