// What the job runner asks of a worker, one decoder layer ("block") at a time. A worker holds
// the calibration hidden states of the shards it owns and a copy of the layer being quantized;
// it computes per-shard statistics, solves the groups it owns, applies every group's solution
// so its copy stays the layer as quantized so far, and runs the layer to make the next
// layer's inputs. Activations never leave a worker; statistics and solutions do.
//
// LocalWorker (local_worker.h) implements it in process; the service's gRPC client implements
// the same interface, so `qshard quantize` and the service drive one engine (job_runner.h).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/job_spec.h"
#include "nlohmann/json.hpp"
#include "worker/calibration/attention_stats.h"
#include "worker/calibration/hessian.h"
#include "worker/methods/layer_method.h"

namespace qshard {

// The statistics of one group of linears: the Σ x xᵀ of its shared input and, for methods that
// need them, the attention statistics. Partials of shards add exactly along the shard tree.
struct GroupStatistics {
  HessianSum inputs;
  std::optional<AttentionStats> attention;
  // Owner reduction: the values are not here but held, reduced, by the worker with this data
  // address (WorkerClient::ReduceStatistics), where a Solve given this handle reads them.
  std::string held_at;

  // `pool` (optional) runs the element-wise adds on several threads; the bytes are the same.
  // `upper_only`: the input sums hold current upper triangles only (HessianSum::Merge).
  absl::Status Merge(const GroupStatistics& other, ThreadPool* pool = nullptr, bool upper_only = false);
};

// The partial statistics of shards [first_shard, first_shard + shard_count) — a node of the
// reduction tree (statistics_tree.h) — for each group asked for, in the order asked.
struct ShardStatistics {
  int first_shard = 0;
  int shard_count = 1;
  std::vector<GroupStatistics> groups;
};

// A tree node of partials that a worker holds for its peers to pull: where, and which shards.
struct StatisticsSource {
  std::string address;  // the holder's DataAddress()
  int first_shard = 0;
  int shard_count = 1;
};

class WorkerClient {
 public:
  virtual ~WorkerClient() = default;

  // Opens the spec's model and embeds the calibration windows of `shards` (ascending shard
  // indices; empty for a worker that only solves, or a method without calibration).
  virtual absl::Status StartJob(const JobSpec& spec, int64_t seqlen, std::vector<int> shards) = 0;

  // Loads `layer` from the model as the layer being quantized; the hidden states must be its
  // inputs (every layer before it finished). Asking for the same layer again restarts it:
  // the hidden states go back to the layer's inputs (after a lost worker's shards moved).
  virtual absl::Status BeginLayer(int layer) = 0;

  // Takes over `shards` of a lost worker (or, after a coordinator restart, its own): embeds
  // their windows, which then stand at layer 0's inputs behind the worker's other shards.
  virtual absl::Status AdoptShards(std::vector<int> shards) = 0;

  // Runs finished layer `layer`, given as its groups' solutions in order, over the adopted
  // shards that stand at its inputs, bit for bit as the layer's first run did. Called for
  // layers 0, 1, ... in turn, one layer in memory at a time, until they catch up.
  virtual absl::Status ReplayLayer(int layer, const std::vector<GroupSolution>& solutions) = 0;

  // The statistics of `groups` (indices into DecoderModel::LinearGroups) over the worker's
  // shards, as the largest reduction-tree nodes it holds (statistics_tree.h). Sequential propagation asks for one group at a time, in order, each after the
  // earlier groups' solutions were applied; parallel propagation asks for all groups at once
  // on the full-precision layer, which also makes the next layer's inputs.
  virtual absl::StatusOr<std::vector<ShardStatistics>> CollectStatistics(const std::vector<int>& groups,
                                                                         bool attention) = 0;

  // Where this worker's peers pull the statistics it holds; empty (an in-process worker): they
  // cannot, so CollectStatistics returns the values and the runner adds them itself. Otherwise
  // CollectStatistics returns only the nodes (groups left empty) and keeps their values.
  virtual std::string DataAddress() { return ""; }

  // Where this worker collects statistics and solves: "cpu" or "cuda:N" (worker/device/device.h).
  // A checkpoint's bytes depend on the device kind, so a job runs on workers of one kind.
  virtual std::string DeviceName() { return "cpu"; }

  // What the current job keeps on this worker's device, as of its StartJob and AdoptShards
  // (worker/device/device_memory_plan.h's DeviceMemoryPlanJson): null on the CPU and for a job
  // without a device forward pass.
  virtual nlohmann::json DeviceMemory() { return nullptr; }

  // Owner reduction (a worker with a DataAddress): pulls `group`'s partials from `sources` and
  // adds them along the tree of `shards` shards (statistics_tree.h) as they stream in; the
  // worker then holds the reduced statistics until the group is applied or the next layer.
  // When a source could not be read, `unreachable` is set to its index (its holder is lost,
  // not this worker).
  virtual absl::Status ReduceStatistics(int group, int shards, const std::vector<StatisticsSource>& sources,
                                        std::optional<size_t>* unreachable) {
    return absl::UnimplementedError("this worker holds no statistics for its peers");
  }

  // A Solve or SolveShared whose statistics' holder (GroupStatistics::held_at) could not be
  // read fails ABORTED, with this payload holding the holder's address: the holder is lost,
  // not this worker.
  static constexpr char kUnreadableHolderPayload[] = "qshard.unreadable_statistics_holder";

  // Solves `group` from its reduced statistics (null: the method needs none): all of its
  // quantized linears, or only `linears` of them for a method that solves each on its own or,
  // given `shared` (from SolveShared, on this or another worker), each on its own after that.
  virtual absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears,
                                              const GroupStatistics* statistics, const SharedGroupPart* shared) = 0;

  // The first step of a two-step solve (a method registered `independent_after_shared`): the
  // part of `group`'s solve its linears share; the solution's rewrites are in it.
  virtual absl::StatusOr<SharedGroupPart> SolveShared(int group, const GroupStatistics* statistics) = 0;

  // The per-head step of a three-step solve (a method registered with `heads_of`): `ranges` of
  // the group's head-split linears, given its shared part; the runner joins the parts
  // (head_parts.h).
  virtual absl::StatusOr<std::vector<HeadsPart>> SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                            const GroupStatistics* statistics,
                                                            const SharedGroupPart& shared) = 0;

  // Installs a group's solution into the worker's copy of the layer.
  virtual absl::Status Apply(int group, const GroupSolution& solution) = 0;

  // Runs the rest of the quantized layer over the shards: the next layer's inputs (none after
  // the model's last layer, whose rest is not computed).
  virtual absl::Status FinishLayer() = 0;

  // The job's final validation (validation.h) on this worker's own device (DeviceName()): the
  // report's "validation" object. It reads the finished checkpoint at spec.out_dir, the model
  // and the validation text by the paths the coordinator uses (storage shared with it); it
  // needs no StartJob. UNAVAILABLE: this worker is lost, another may take it over.
  virtual absl::StatusOr<nlohmann::json> Validate(const JobSpec& spec) {
    return absl::UnimplementedError("this worker cannot validate checkpoints");
  }
};

}  // namespace qshard
