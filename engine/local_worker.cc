#include "engine/local_worker.h"

#include <algorithm>
#include <array>
#include <map>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "engine/calibration_shards.h"
#include "engine/calibration_windows.h"
#include "engine/device_job_plan.h"
#include "engine/job_plan.h"
#include "engine/statistics_tree.h"
#include "engine/validation.h"
#include "worker/calibration/input_stats_collector.h"
#include "worker/calibration/observer_fanout.h"
#include "worker/device/device_support.h"
#include "worker/methods/per_linear_method.h"
#include "worker/model/decoder_layers.h"

namespace qshard {

absl::Status LocalWorker::StartJob(const JobSpec& spec, int64_t seqlen, std::vector<int> shards) {
  spec_ = spec;
  seqlen_ = seqlen;
  QSHARD_ASSIGN_OR_RETURN(registration_, FindMethod(spec.method.method));
  // What runs on the device is decided here, once (refused before the model is opened), rather
  // than found out halfway.
  QSHARD_ASSIGN_OR_RETURN(const DevicePlan plan,
                          PlanOnDevice(spec.method, device_ != nullptr ? device_->device() : Device{}));
  if (plan.solves == DevicePlan::Place::kDevice) {
    QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver, device_->MakeGptqSolver(spec.method.spec));
    method_ = MakePerLinearMethod(std::move(solver));
  } else {
    QSHARD_ASSIGN_OR_RETURN(method_, registration_->make(spec.method));
  }
  rounding_.reset();
  if (plan.rounding == DevicePlan::Place::kDevice) {
    QSHARD_ASSIGN_OR_RETURN(rounding_, device_->MakeRoundingLearner());
  }
  gptq_.reset();
  if (plan.gptq_solves == DevicePlan::Place::kDevice) {
    QSHARD_ASSIGN_OR_RETURN(gptq_, device_->MakeGptqSolver(spec.method.spec));
  }
  QSHARD_ASSIGN_OR_RETURN(source_, OpenSourceModel(spec.model_dir, threads_ > 0 ? threads_ : spec.execution.threads));
  forward_.reset();
  if (plan.calibration == DevicePlan::Place::kDevice) {
    QSHARD_ASSIGN_OR_RETURN(forward_,
                            device_->NewForward(*source_.model, seqlen, ForwardStatisticsOf(spec, *registration_)));
  }
  group_names_.clear();
  for (const auto& group : source_.model->LinearGroups()) group_names_.push_back(group.front());
  const std::vector<std::string> skipped = SkippedLinears(spec, source_.model->layer_spec());
  skipped_ = std::set<std::string>(skipped.begin(), skipped.end());
  shards_.clear();
  windows_.clear();
  layer_ = -1;
  if (shards.empty() || !registration_->needs.input_stats) return absl::OkStatus();

  QSHARD_ASSIGN_OR_RETURN(windows_, CalibrationWindows(spec, seqlen));
  for (int index : shards) {
    QSHARD_ASSIGN_OR_RETURN(Shard shard, EmbedShard(index));
    QSHARD_RETURN_IF_ERROR(HoldHidden(shard, std::move(shard.hidden)));
    shards_.push_back(std::move(shard));
  }
  return absl::OkStatus();
}

absl::StatusOr<LocalWorker::Shard> LocalWorker::EmbedShard(int index) {
  const WindowRange range = ShardWindows(spec_.calibration.nsamples, spec_.calibration.shards, index);
  Shard shard;
  shard.index = index;
  shard.windows = range.count;
  if (range.count == 0) {  // more shards than windows
    shard.hidden = Tensor({0, source_.model->config().hidden_size});
    return shard;
  }
  const int32_t* first = windows_.data() + range.first * seqlen_;
  QSHARD_ASSIGN_OR_RETURN(shard.hidden,
                          source_.model->Embed(absl::MakeConstSpan(first, range.count * seqlen_), range.count, seqlen_));
  return shard;
}

absl::Status LocalWorker::AdoptShards(std::vector<int> shards) {
  if (source_.model == nullptr) return absl::FailedPreconditionError("AdoptShards before StartJob");
  if (windows_.empty()) {
    QSHARD_ASSIGN_OR_RETURN(windows_, CalibrationWindows(spec_, seqlen_));
  }
  for (int index : shards) {
    QSHARD_ASSIGN_OR_RETURN(Shard shard, EmbedShard(index));
    shard.replaying_at = 0;
    if (restartable_) shard.layer_input = shard.hidden;
    QSHARD_RETURN_IF_ERROR(HoldHidden(shard, std::move(shard.hidden)));
    shards_.push_back(std::move(shard));
  }
  std::sort(shards_.begin(), shards_.end(), [](const Shard& a, const Shard& b) { return a.index < b.index; });
  return absl::OkStatus();
}

absl::Status LocalWorker::ReplayLayer(int layer, const std::vector<GroupSolution>& solutions) {
  if (source_.model == nullptr) return absl::FailedPreconditionError("ReplayLayer before StartJob");
  // The layer as it was finished: its final weights (the full-precision ones under parallel
  // propagation, whose hidden states never see the solutions).
  QSHARD_ASSIGN_OR_RETURN(DecoderLayerWeights weights, source_.model->LoadLayer(layer));
  QuantizedLayer quantized;
  if (spec_.calibration.propagation == Propagation::kSequential)
    for (const GroupSolution& solution : solutions) QSHARD_RETURN_IF_ERROR(ApplyGroupSolution(solution, weights, quantized));
  QSHARD_RETURN_IF_ERROR(LoadOnDevice(layer, weights));
  for (size_t position = 0; position < shards_.size(); ++position) {
    Shard& shard = shards_[position];
    if (shard.replaying_at != layer) continue;
    if (forward_ != nullptr) {
      QSHARD_RETURN_IF_ERROR(WithContext(forward_->Run(shard.index, ForwardPass{0, 3, true}, {}, nullptr),
                                         absl::StrCat("layer ", layer, " shard ", shard.index)));
    } else {
      ForEachBatchOf(shard, position, [&](Batch& b) {
        Tensor rows = BatchRows(b);
        source_.model->RunLayer(layer, weights, rows, b.windows, seqlen_);
        StoreRows(b, rows);
      });
    }
    shard.replaying_at = layer + 1;
    if (restartable_) QSHARD_RETURN_IF_ERROR(KeepLayerInput(shard));
  }
  // The device goes back to the layer in progress, as far as it was quantized.
  return layer_ >= 0 ? LoadOnDevice(layer_, weights_) : absl::OkStatus();
}

absl::Status LocalWorker::LoadOnDevice(int layer, const DecoderLayerWeights& weights) {
  if (forward_ == nullptr) return absl::OkStatus();
  return WithContext(forward_->LoadLayer(layer, weights), absl::StrCat("layer ", layer));
}

absl::Status LocalWorker::HoldHidden(Shard& shard, Tensor hidden) {
  if (forward_ == nullptr) {
    shard.hidden = std::move(hidden);
    return absl::OkStatus();
  }
  shard.hidden = Tensor();
  return WithContext(forward_->HoldShard(shard.index, hidden), absl::StrCat("shard ", shard.index));
}

absl::Status LocalWorker::KeepLayerInput(Shard& shard) {
  if (forward_ == nullptr) {
    shard.layer_input = shard.hidden;
    return absl::OkStatus();
  }
  shard.layer_input = Tensor({shard.windows * seqlen_, source_.model->config().hidden_size});
  return WithContext(forward_->ReadShard(shard.index, shard.layer_input), absl::StrCat("shard ", shard.index));
}

absl::Status LocalWorker::BeginLayer(int layer) {
  if (source_.model == nullptr) return absl::FailedPreconditionError("BeginLayer before StartJob");
  if (layer == layer_ && !restartable_)
    return absl::FailedPreconditionError(absl::StrCat("layer ", layer, ": this worker cannot restart a layer"));
  for (const Shard& shard : shards_)
    if (shard.replaying_at >= 0 && shard.replaying_at != layer)
      return absl::FailedPreconditionError(absl::StrCat("layer ", layer, ": adopted shard ", shard.index,
                                                        " stands at layer ", shard.replaying_at, "'s inputs"));
  QSHARD_ASSIGN_OR_RETURN(weights_, source_.model->LoadLayer(layer));
  quantized_ = QuantizedLayer();
  for (Shard& shard : shards_) {
    shard.replaying_at = -1;
    if (layer == layer_) {
      QSHARD_RETURN_IF_ERROR(HoldHidden(shard, shard.layer_input));  // a restart
    } else if (restartable_) {
      QSHARD_RETURN_IF_ERROR(KeepLayerInput(shard));
    }
    shard.cache.clear();
  }
  QSHARD_RETURN_IF_ERROR(LoadOnDevice(layer, weights_));
  layer_ = layer;
  position_ = Position::kLayerInput;
  return absl::OkStatus();
}

void LocalWorker::ForEachBatch(const std::function<void(Batch&)>& body,
                               const std::function<void(size_t)>& shard_done) {
  for (size_t position = 0; position < shards_.size(); ++position) {
    ForEachBatchOf(shards_[position], position, body);
    if (shard_done) shard_done(position);
  }
}

void LocalWorker::ForEachBatchOf(Shard& shard, size_t position, const std::function<void(Batch&)>& body) {
  const int64_t per_batch =
      ForwardBatchWindows(spec_, source_.model->config(), seqlen_, registration_->needs.attention_stats);
  const int64_t width = source_.model->config().hidden_size;
  const int64_t windows = shard.windows;
  shard.cache.resize((windows + per_batch - 1) / per_batch);
  for (int64_t first = 0, index = 0; first < windows; first += per_batch, ++index) {
    Batch batch{shard, position, static_cast<size_t>(index), std::min(per_batch, windows - first),
                shard.hidden.data() + first * seqlen_ * width};
    body(batch);
  }
}

Tensor LocalWorker::BatchRows(const Batch& batch) const {
  const int64_t rows = batch.windows * seqlen_, width = source_.model->config().hidden_size;
  return Tensor({rows, width}, std::vector<float>(batch.rows, batch.rows + rows * width));
}

void LocalWorker::StoreRows(Batch& batch, const Tensor& rows) const {
  std::memcpy(batch.rows, rows.data(), rows.size() * sizeof(float));
}

void LocalWorker::Step(std::span<LayerObserver* const> observers, const std::function<void(size_t)>& shard_done) {
  const DecoderModel& model = *source_.model;
  const auto input = [&](Batch& b, int group, const Tensor& residual, const Tensor& previous) {
    Tensor x = model.GroupInput(layer_, weights_, group, residual, previous, b.windows, seqlen_);
    if (!observers.empty()) observers[b.shard_position]->OnLinearInput(layer_, group_names_[group], x);
    return x;
  };
  const auto add_output = [&](Batch& b, int group) {
    Tensor residual = BatchRows(b);
    model.AddGroupOutput(layer_, weights_, group, b.shard.cache[b.index], residual, b.windows, seqlen_);
    b.shard.cache[b.index] = Tensor();
    StoreRows(b, residual);
    return residual;
  };
  // Group first + 1's input (the attention or the MLP activation) from group first's, kept
  // until that group is solved.
  const auto cache_inner = [&](int first) {
    ForEachBatch([&](Batch& b) {
      const Tensor residual = BatchRows(b);
      const Tensor outer = model.GroupInput(layer_, weights_, first, residual, Tensor(), b.windows, seqlen_);
      b.shard.cache[b.index] = input(b, first + 1, residual, outer);
    }, shard_done);
  };
  switch (position_) {
    case Position::kLayerInput:
      cache_inner(0);
      position_ = Position::kAttentionComputed;
      break;
    case Position::kAttentionComputed:
      ForEachBatch([&](Batch& b) { input(b, 2, add_output(b, 1), Tensor()); }, shard_done);
      position_ = Position::kAttentionAdded;
      break;
    case Position::kAttentionAdded:
      cache_inner(2);
      position_ = Position::kMlpComputed;
      break;
    case Position::kMlpComputed:
      ForEachBatch([&](Batch& b) { add_output(b, 3); }, shard_done);
      position_ = Position::kLayerOutput;
      break;
    case Position::kLayerOutput:
      break;
  }
}

absl::Status LocalWorker::StepUntilBefore(int group) {
  // Group g's input is produced by the step out of position g - 1 (group 0's is read in place).
  const int before = std::max(group - 1, 0);
  if (static_cast<int>(position_) > before)
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", layer_, ": statistics of group ", group, " asked for after it was passed"));
  while (static_cast<int>(position_) < before) QSHARD_RETURN_IF_ERROR(StepWithoutStatistics());
  return absl::OkStatus();
}

absl::Status LocalWorker::StepWithoutStatistics() {
  if (forward_ != nullptr) return StepOnDevice(nullptr);
  Step({});
  return absl::OkStatus();
}

absl::Status LocalWorker::StepOnDevice(std::vector<InputStatsCollector>* collectors,
                                       const std::function<void(size_t)>& shard_done) {
  // Step's stages as device passes, each recomputing the activation Step keeps in the cache.
  ForwardPass pass;
  switch (position_) {
    case Position::kLayerInput: pass = {0, 1, false}; break;         // the attention: group 1's input
    case Position::kAttentionComputed: pass = {0, 2, false}; break;  // o added, group 2's input
    case Position::kAttentionAdded: pass = {2, 3, false}; break;     // the MLP activation: group 3's input
    case Position::kMlpComputed: pass = {2, 3, true}; break;         // the MLP's output added
    case Position::kLayerOutput: return absl::OkStatus();
  }
  QSHARD_RETURN_IF_ERROR(RunOnDevice(pass, collectors, shard_done));
  position_ = static_cast<Position>(static_cast<int>(position_) + 1);
  return absl::OkStatus();
}

absl::Status LocalWorker::RunOnDevice(const ForwardPass& pass, std::vector<InputStatsCollector>* collectors,
                                      const std::function<void(size_t)>& shard_done,
                                      std::vector<AttentionStatsCollector>* attentions) {
  const ModelConfig& config = source_.model->config();
  const int64_t widths[kLayerGroups] = {config.hidden_size, config.num_heads * config.head_dim,
                                        config.hidden_size, config.intermediate_size};
  for (size_t s = 0; s < shards_.size(); ++s) {
    const std::string where = absl::StrCat("layer ", layer_, " shard ", shards_[s].index);
    std::array<OffHostHessianSum*, kLayerGroups> sums{};
    for (int g = pass.first; collectors != nullptr && g <= pass.last; ++g) {
      absl::StatusOr<OffHostHessianSum*> sum = (*collectors)[s].DeviceSum(group_names_[g], widths[g]);
      if (!sum.ok()) return WithContext(sum.status(), where);
      sums[g] = *sum;
    }
    OffHostAttentionStats* attention = nullptr;
    if (attentions != nullptr && shards_[s].windows > 0) {  // a shard without windows has none, as on the CPU
      absl::StatusOr<OffHostAttentionStats*> stats = (*attentions)[s].DeviceStats(seqlen_);
      if (!stats.ok()) return WithContext(stats.status(), where);
      attention = *stats;
    }
    QSHARD_RETURN_IF_ERROR(WithContext(forward_->Run(shards_[s].index, pass, sums, attention), where));
    if (shard_done) shard_done(s);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ShardStatistics>> LocalWorker::CollectStatistics(const std::vector<int>& groups,
                                                                            bool attention) {
  if (layer_ < 0) return absl::FailedPreconditionError("CollectStatistics before BeginLayer");
  const bool whole_layer = spec_.calibration.propagation == Propagation::kParallel;
  if (groups.empty() || (!whole_layer && groups.size() != 1))
    return absl::InvalidArgumentError("sequential propagation collects one group at a time");
  std::set<std::string> names;
  for (int g : groups) {
    if (g < 0 || g >= static_cast<int>(group_names_.size()))
      return absl::InvalidArgumentError(absl::StrCat("group ", g, " out of range"));
    names.insert(group_names_[g]);
  }
  if (!whole_layer) QSHARD_RETURN_IF_ERROR(StepUntilBefore(groups.front()));
  if (whole_layer && position_ != Position::kLayerInput)
    return absl::FailedPreconditionError(absl::StrCat("layer ", layer_, ": statistics asked for twice"));

  HessianWorkspace workspace{&source_.model->pool(), {}, {}};
  std::vector<InputStatsCollector> inputs;
  std::vector<AttentionStatsCollector> attentions;
  std::vector<ObserverFanOut> observers;
  Tensor probabilities;  // the shards' collectors run one after another: one scratch for all
  inputs.reserve(shards_.size());
  attentions.reserve(shards_.size());
  observers.reserve(shards_.size());
  for (size_t s = 0; s < shards_.size(); ++s) {
    inputs.emplace_back(layer_, names, seqlen_, &workspace, forward_ != nullptr ? device_.get() : nullptr);
    attentions.emplace_back(layer_, source_.model->config(), workspace.pool, &probabilities,
                            forward_ != nullptr ? device_.get() : nullptr);
    observers.emplace_back(attention ? std::vector<LayerObserver*>{&inputs[s], &attentions[s]}
                                     : std::vector<LayerObserver*>{&inputs[s]});
  }
  // Each shard's sums go into the shard tree as soon as its last batch is seen.
  std::vector<int> held;
  for (const Shard& shard : shards_) held.push_back(shard.index);
  HeldShardReducer reducer(held, &workspace);
  absl::Status device_status;  // the first shard whose device sums failed; no shard is added after it
  const auto shard_done = [&](size_t s) {
    if (!device_status.ok()) return;
    std::map<std::string, HessianSum> sums = inputs[s].TakeUpper();  // mirrored once, below
    if (!inputs[s].status().ok()) {
      if (device_status.ok())
        device_status = WithContext(inputs[s].status(), absl::StrCat("layer ", layer_, " shard ", shards_[s].index));
      return;
    }
    std::vector<GroupStatistics> partial;
    for (int g : groups) {
      GroupStatistics& statistics = partial.emplace_back();
      auto it = sums.find(group_names_[g]);
      if (it != sums.end()) statistics.inputs = std::move(it->second);
      if (attention && (whole_layer || g == 0)) statistics.attention = attentions[s].Take();
    }
    if (!attentions[s].status().ok()) {
      device_status = WithContext(attentions[s].status(), absl::StrCat("layer ", layer_, " shard ", shards_[s].index));
      return;
    }
    reducer.Add(shards_[s].index, std::move(partial));
  };
  if (forward_ != nullptr) {
    // aespa's attention statistics come from the pass that computes group 0's input, on the
    // device, from the layer's weights as they stand (full precision, as on the CPU).
    std::vector<AttentionStatsCollector>* device_attentions = attention ? &attentions : nullptr;
    if (whole_layer) {
      QSHARD_RETURN_IF_ERROR(RunOnDevice(ForwardPass{0, 3, true}, &inputs, shard_done, device_attentions));
      position_ = Position::kLayerOutput;
    } else if (groups.front() == 0) {
      QSHARD_RETURN_IF_ERROR(RunOnDevice(ForwardPass{0, 0, false}, &inputs, shard_done, device_attentions));
    } else {
      QSHARD_RETURN_IF_ERROR(StepOnDevice(&inputs, shard_done));
    }
  } else if (whole_layer) {
    // Parallel propagation: one pass of the full-precision layer sees every group's input and
    // makes the next layer's inputs.
    ForEachBatch([&](Batch& b) {
      Tensor rows = BatchRows(b);
      source_.model->RunLayer(layer_, weights_, rows, b.windows, seqlen_, &observers[b.shard_position]);
      StoreRows(b, rows);
    }, shard_done);
    position_ = Position::kLayerOutput;
  } else if (groups.front() == 0) {
    // The q/k/v group reads the normed layer input; aespa's attention statistics come from the
    // full-precision attention's probabilities over it (its output is not needed).
    ForEachBatch([&](Batch& b) {
      const Tensor residual = BatchRows(b);
      LayerObserver* observer = &observers[b.shard_position];
      const Tensor normed = source_.model->GroupInput(layer_, weights_, 0, residual, Tensor(), b.windows, seqlen_);
      observer->OnLinearInput(layer_, group_names_[0], normed);
      if (attention) source_.model->ObserveAttention(layer_, weights_, normed, b.windows, seqlen_, *observer);
    }, shard_done);
  } else {
    std::vector<LayerObserver*> per_shard;
    for (ObserverFanOut& observer : observers) per_shard.push_back(&observer);
    Step(per_shard, shard_done);
  }

  QSHARD_RETURN_IF_ERROR(device_status);
  std::vector<ShardStatistics> nodes = reducer.Take();
  for (ShardStatistics& node : nodes)
    for (GroupStatistics& group : node.groups) group.inputs.MirrorUpper(workspace.pool);
  return nodes;
}

absl::StatusOr<GroupProblem> LocalWorker::ProblemOf(int group, const GroupStatistics* statistics) const {
  if (layer_ < 0) return absl::FailedPreconditionError("Solve before BeginLayer");
  const std::vector<std::vector<std::string>> groups = source_.model->LinearGroups();
  if (group < 0 || group >= static_cast<int>(groups.size()))
    return absl::InvalidArgumentError(absl::StrCat("group ", group, " out of range"));
  GroupProblem problem;
  problem.layer = layer_;
  problem.config = &source_.model->config();
  for (const std::string& linear : groups[group])
    if (!skipped_.count(linear)) problem.linears.push_back(linear);
  problem.partial = problem.linears.size() != groups[group].size();
  if (problem.linears.empty()) return absl::InvalidArgumentError(absl::StrCat("group ", group, ": no linear to solve"));
  if (statistics != nullptr) {
    problem.input_stats = &statistics->inputs;
    if (statistics->attention) problem.attention = &*statistics->attention;
  }
  problem.weights = &weights_;
  problem.quantized = &quantized_;
  problem.pool = &source_.model->pool();
  problem.rounding = rounding_.get();
  problem.gptq = gptq_.get();
  return problem;
}

absl::StatusOr<GroupSolution> LocalWorker::Solve(int group, const std::vector<std::string>& linears,
                                                 const GroupStatistics* statistics, const SharedGroupPart* shared) {
  QSHARD_ASSIGN_OR_RETURN(GroupProblem problem, ProblemOf(group, statistics));
  for (const std::string& linear : linears)
    if (std::find(problem.linears.begin(), problem.linears.end(), linear) == problem.linears.end())
      return absl::InvalidArgumentError(absl::StrCat("group ", group, ": '", linear, "' is not one of its quantized linears"));
  absl::StatusOr<GroupSolution> solution;
  if (shared != nullptr) {
    solution = method_->SolveLinears(problem, *shared, linears.empty() ? problem.linears : linears);
  } else {
    if (!linears.empty())  // a method whose linears are independent: those asked for, in group order
      std::erase_if(problem.linears, [&](const std::string& l) {
        return std::find(linears.begin(), linears.end(), l) == linears.end();
      });
    solution = method_->SolveGroup(problem);
  }
  if (!solution.ok()) return WithContext(solution.status(), absl::StrCat("layer ", layer_));
  return solution;
}

absl::StatusOr<SharedGroupPart> LocalWorker::SolveShared(int group, const GroupStatistics* statistics) {
  QSHARD_ASSIGN_OR_RETURN(const GroupProblem problem, ProblemOf(group, statistics));
  auto shared = method_->SolveShared(problem);
  if (!shared.ok()) return WithContext(shared.status(), absl::StrCat("layer ", layer_));
  return shared;
}

absl::StatusOr<std::vector<HeadsPart>> LocalWorker::SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                               const GroupStatistics* statistics,
                                                               const SharedGroupPart& shared) {
  QSHARD_ASSIGN_OR_RETURN(const GroupProblem problem, ProblemOf(group, statistics));
  auto parts = method_->SolveHeads(problem, shared, ranges);
  if (!parts.ok()) return WithContext(parts.status(), absl::StrCat("layer ", layer_));
  return parts;
}

absl::Status LocalWorker::Apply(int group, const GroupSolution& solution) {
  QSHARD_RETURN_IF_ERROR(WithContext(ApplyGroupSolution(solution, weights_, quantized_), absl::StrCat("layer ", layer_)));
  if (forward_ == nullptr) {
    // A rewrite (Z-Fold's ζ folded into v_proj or up_proj) changes the tensors the cached
    // activation was computed from: step back so the next step recomputes it from the residual,
    // exactly as the rewritten layer computes it. (The device keeps no such cache: its next pass
    // recomputes the activation anyway.)
    if (!solution.rewrites.empty() &&
        (position_ == Position::kAttentionComputed || position_ == Position::kMlpComputed)) {
      position_ = static_cast<Position>(static_cast<int>(position_) - 1);
      for (Shard& shard : shards_) shard.cache.clear();
    }
    return absl::OkStatus();
  }
  // The device computes the rest of the layer with the solution (nothing more once it is done):
  // its linears and every tensor a rewrite changed (a norm, a full-precision producer's rows and
  // bias, or an earlier quantized linear's scales, hence its weight) go up again.
  if (position_ == Position::kLayerOutput) return absl::OkStatus();
  std::set<std::string> linears;
  bool norm_rewritten = false;
  for (const auto& [name, weight] : solution.linears) linears.insert(name);
  for (const TensorRewrite& rewrite : solution.rewrites) {
    if (rewrite.target == TensorRewrite::Target::kNorm) {
      norm_rewritten = true;
    } else {
      linears.insert(rewrite.name);
    }
  }
  return WithContext(norm_rewritten ? forward_->LoadLayer(layer_, weights_)
                                    : forward_->UpdateLinears(weights_, {linears.begin(), linears.end()}),
                     absl::StrCat("layer ", layer_));
}

absl::StatusOr<nlohmann::json> LocalWorker::Validate(const JobSpec& spec) {
  // The job is over: its hidden states and layer leave the device's memory to the two models.
  shards_.clear();
  windows_.clear();
  forward_.reset();
  rounding_.reset();
  gptq_.reset();
  weights_ = DecoderLayerWeights();
  quantized_ = QuantizedLayer();
  source_ = SourceModel();
  layer_ = -1;
  JobSpec here = spec;
  if (threads_ > 0) here.execution.threads = threads_;  // this machine's own --threads
  return ValidateCheckpoint(here, device_.get());
}

std::string LocalWorker::DeviceName() {
  return device_ != nullptr ? qshard::DeviceName(device_->device()) : "cpu";
}

nlohmann::json LocalWorker::DeviceMemory() {
  return forward_ != nullptr ? DeviceMemoryPlanJson(forward_->MemoryPlan()) : nlohmann::json();
}

absl::Status LocalWorker::FinishLayer() {
  // The model's last layer has no next layer to make inputs for: nothing reads its output (in a
  // one-layer job that is its whole MLP output, fc2's product at OPT sizes).
  if (layer_ + 1 == source_.model->config().num_layers) {
    position_ = Position::kLayerOutput;
    for (Shard& shard : shards_) shard.cache.clear();
    return absl::OkStatus();
  }
  while (position_ != Position::kLayerOutput) QSHARD_RETURN_IF_ERROR(StepWithoutStatistics());
  return absl::OkStatus();
}

}  // namespace qshard
