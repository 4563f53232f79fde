// The worker in process: embedded `qshard quantize` runs one, a `qshard worker` process serves
// one over gRPC. It keeps its shards' calibration hidden states and walks each layer through
// its true-sequential stages (decoder_layers.h) exactly once: the q/k/v group's input is the
// normed residual, the output projection's input the attention computed with the quantized
// q/k/v (kept until that group is solved), the MLP groups' inputs follow from it, and the
// last stage adds the quantized MLP's output — one attention and one pass of each linear per
// layer instead of a full layer pass per group. Given a CUDA device (`--device cuda`), what runs
// there is the job's DevicePlan (worker/device/device_support.h): for a method with calibration,
// the shards' hidden states live there, the same stages run there window by window (recomputing
// the cached activation instead of keeping it) and their statistics accumulate there; GPTQ's
// solves run there too (with --mse's clipping search) — Z-Fold's and aespa's included (GroupProblem::gptq), and
// aespa's AdaRound — every other solve on the CPU.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <set>
#include <string>
#include <vector>

#include "engine/source_model.h"
#include "engine/worker_client.h"
#include "worker/calibration/attention_stats.h"
#include "worker/calibration/input_stats_collector.h"
#include "worker/device/cuda_device.h"
#include "worker/methods/method_registry.h"

namespace qshard {

class LocalWorker : public WorkerClient {
 public:
  // `threads` > 0 overrides the spec's (a worker process's own --threads). A `restartable`
  // worker keeps a copy of its shards' layer inputs (one more hidden-state tensor) so a layer
  // can be restarted when another worker is lost; a job's only worker need not. `device`
  // (OpenDevice's, null: the CPU) runs what each job's plan gives it (PlanOnDevice, made by
  // StartJob, which refuses a job the device cannot run).
  explicit LocalWorker(int threads = 0, bool restartable = false, std::shared_ptr<CudaDevice> device = nullptr)
      : threads_(threads), restartable_(restartable), device_(std::move(device)) {}

  absl::Status StartJob(const JobSpec& spec, int64_t seqlen, std::vector<int> shards) override;
  absl::Status BeginLayer(int layer) override;
  absl::Status AdoptShards(std::vector<int> shards) override;
  absl::Status ReplayLayer(int layer, const std::vector<GroupSolution>& solutions) override;
  absl::StatusOr<std::vector<ShardStatistics>> CollectStatistics(const std::vector<int>& groups,
                                                                 bool attention) override;
  absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears,
                                      const GroupStatistics* statistics, const SharedGroupPart* shared) override;
  absl::StatusOr<SharedGroupPart> SolveShared(int group, const GroupStatistics* statistics) override;
  absl::StatusOr<std::vector<HeadsPart>> SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                    const GroupStatistics* statistics,
                                                    const SharedGroupPart& shared) override;
  absl::Status Apply(int group, const GroupSolution& solution) override;
  absl::Status FinishLayer() override;
  absl::StatusOr<nlohmann::json> Validate(const JobSpec& spec) override;
  std::string DeviceName() override;
  nlohmann::json DeviceMemory() override;

 private:
  // Where the shards' hidden states stand inside the current layer.
  enum class Position {
    kLayerInput,         // the residual is the layer's input
    kAttentionComputed,  // the cache holds the attention output (group 1's input)
    kAttentionAdded,     // the residual includes the attention output projection
    kMlpComputed,        // the cache holds the MLP hidden activation (group 3's input)
    kLayerOutput,        // the residual is the layer's output
  };
  struct Shard {
    int index = 0;
    int64_t windows = 0;
    Tensor hidden;              // [windows·seqlen, hidden_size]; empty when the device holds it
    Tensor layer_input;         // hidden as the current layer began, to restart it
    std::vector<Tensor> cache;  // per forward batch: the pending stage's activation
    int replaying_at = -1;      // adopted and catching up: the layer whose inputs `hidden` holds
  };
  struct Batch {
    Shard& shard;
    size_t shard_position;  // among the worker's shards
    size_t index;           // among the shard's batches
    int64_t windows;  // in this batch
    float* rows;      // its rows of shard.hidden
  };

  // Moves the hidden states one stage forward; observers[s] (when given) sees shard s's input
  // of the group that stage produces.
  // `shard_done(s)` runs after the last batch of shard s.
  void Step(std::span<LayerObserver* const> observers, const std::function<void(size_t)>& shard_done = nullptr);
  // Steps without statistics until the stage before `group`'s input is reached.
  absl::Status StepUntilBefore(int group);
  absl::Status StepWithoutStatistics();
  // Step on the device: one pass over every shard; collectors[s] (when given) takes shard s's
  // input of the group the step produces.
  absl::Status StepOnDevice(std::vector<InputStatsCollector>* collectors,
                            const std::function<void(size_t)>& shard_done = nullptr);
  // Runs `pass` on the device over every shard; collectors[s] (when given) takes shard s's
  // inputs of the groups it collects, attentions[s] (when given, for a pass from group 0) its
  // attention statistics.
  absl::Status RunOnDevice(const ForwardPass& pass, std::vector<InputStatsCollector>* collectors,
                           const std::function<void(size_t)>& shard_done = nullptr,
                           std::vector<AttentionStatsCollector>* attentions = nullptr);
  // The shard's hidden states from `hidden`: kept in `shard`, or handed to the device.
  absl::Status HoldHidden(Shard& shard, Tensor hidden);
  // shard.layer_input = its hidden states now (read back from the device where it holds them).
  absl::Status KeepLayerInput(Shard& shard);
  // The layer's weights onto the device, when there is one.
  absl::Status LoadOnDevice(int layer, const DecoderLayerWeights& weights);
  void ForEachBatch(const std::function<void(Batch&)>& body, const std::function<void(size_t)>& shard_done = nullptr);
  void ForEachBatchOf(Shard& shard, size_t position, const std::function<void(Batch&)>& body);
  // `group`'s problem on the layer as quantized so far: every linear of it the job quantizes.
  absl::StatusOr<GroupProblem> ProblemOf(int group, const GroupStatistics* statistics) const;
  // The embedded calibration windows of shard `index`.
  absl::StatusOr<Shard> EmbedShard(int index);
  Tensor BatchRows(const Batch& batch) const;
  void StoreRows(Batch& batch, const Tensor& rows) const;

  int threads_ = 0;
  bool restartable_ = false;
  std::shared_ptr<CudaDevice> device_;
  std::unique_ptr<ForwardDevice> forward_;  // the job's calibration on device_; null: on the CPU, or none
  std::unique_ptr<RoundingLearner> rounding_;  // the job's AdaRound on device_; null: on the CPU, or none
  std::unique_ptr<Solver> gptq_;  // Z-Fold's and aespa's GPTQ solves on device_; null: the methods' own
  JobSpec spec_;
  int64_t seqlen_ = 0;
  std::vector<int32_t> windows_;  // token ids of every calibration window of the job
  SourceModel source_;
  std::unique_ptr<LayerMethod> method_;
  const MethodRegistration* registration_ = nullptr;
  std::vector<std::string> group_names_;  // each group's first linear
  std::set<std::string> skipped_;
  std::vector<Shard> shards_;

  int layer_ = -1;
  Position position_ = Position::kLayerInput;
  DecoderLayerWeights weights_;
  QuantizedLayer quantized_;
};

}  // namespace qshard
