#include "engine/job_runner.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <cmath>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/atomic_file.h"
#include "core/status.h"
#include "engine/calibration_shards.h"
#include "engine/group_size_plan.h"
#include "engine/job_plan.h"
#include "engine/job_report.h"
#include "engine/local_worker.h"
#include "engine/owner_solves.h"
#include "engine/source_model.h"
#include "engine/statistics_tree.h"
#include "engine/validation.h"
#include "worker/device/device_support.h"
#include "worker/export/gptq_checkpoint_writer.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

GptqExportSpec ExportSpecOf(const JobSpec& spec) {
  GptqExportSpec exported;
  exported.bits = spec.method.spec.bits;
  exported.group_size = spec.method.spec.group_size;
  exported.sym = spec.method.spec.sym;
  exported.desc_act = spec.method.spec.act_order;
  exported.static_groups = spec.method.spec.static_groups;
  exported.damp_percent = spec.method.spec.damp;
  exported.method = spec.method.method;
  exported.max_shard_bytes = spec.execution.max_shard_bytes;
  return exported;
}

class Job {
 public:
  Job(const JobSpec& spec, const std::vector<WorkerClient*>& workers, const JobEvents& events,
      const ValidationSite& validation)
      : spec_(spec), workers_(workers), events_(events), validation_(validation) {}

  absl::StatusOr<json> Run() {
    const auto start = Clock::now();
    QSHARD_RETURN_IF_ERROR(ValidateJobSpec(spec_));
    if (workers_.empty()) return absl::FailedPreconditionError("the job has no workers");
    QSHARD_ASSIGN_OR_RETURN(json devices, WorkerDevices());
    // What runs on the workers' device: refused here, before any output, when nothing may.
    QSHARD_ASSIGN_OR_RETURN(const Device device, ParseDevice(devices.front().get<std::string>(), "a worker's device"));
    QSHARD_ASSIGN_OR_RETURN(const DevicePlan device_plan, PlanOnDevice(spec_.method, device));
    if (!spec_.validation.text.empty()) QSHARD_RETURN_IF_ERROR(CheckValidationSite(device, devices));
    QSHARD_ASSIGN_OR_RETURN(const MethodRegistration* method, FindMethod(spec_.method.method));
    method_ = method;
    needs_ = method->needs;
    QSHARD_ASSIGN_OR_RETURN(source_model_,
                            OpenSourceModel(spec_.model_dir, spec_.execution.threads, ModelParts::kLayers));
    source_ = source_model_.model.get();
    const DecoderModel& model = *source_;
    QSHARD_ASSIGN_OR_RETURN(const int64_t seqlen, ValidateJobSpecForModel(spec_, model.config(), model.layer_spec()));
    const std::vector<std::string> skip = SkippedLinears(spec_, model.layer_spec());
    skipped_ = std::set<std::string>(skip.begin(), skip.end());
    for (const LinearSpec& l : model.layer_spec().linears) {
      linear_sizes_[l.name] = static_cast<uint64_t>(l.out_features) * l.in_features;
      if (const int heads = method->heads_of ? method->heads_of(model.config(), spec_.method, l.name) : 0; heads > 0)
        linear_heads_[l.name] = heads;
    }
    if (!needs_.input_stats && !spec_.calibration.text.empty())
      events_.log(absl::StrCat("--method ", spec_.method.method, " needs no calibration: calibration flags unused"));

    shards_ = needs_.input_stats ? spec_.calibration.shards : 0;
    QSHARD_ASSIGN_OR_RETURN(const JobPlan plan, PlanJob(spec_, model.config(), static_cast<int>(workers_.size())));
    events_.log(absl::StrCat("plan: about ", FormatBytes(plan.worker.total()), " per worker, ",
                             FormatBytes(plan.coordinator.total()), " for the runner",
                             workers_.size() > 1 ? absl::StrCat(", ", FormatBytes(plan.statistics_bytes + plan.solution_bytes),
                                                                " over the network per layer")
                                                 : ""));
    // Finished layers are kept for replays (a lost worker's shards) and, in a durable store,
    // for a restart; with one worker and no store nothing needs them.
    FinishedLayersInMemory in_memory;
    kept_ = events_.finished_layers != nullptr ? events_.finished_layers : workers_.size() > 1 ? &in_memory : nullptr;
    int restored = 0;
    if (kept_ != nullptr) {
      QSHARD_ASSIGN_OR_RETURN(restored, kept_->CountKept());
    }
    if (restored > model.config().num_layers)
      return absl::DataLossError(absl::StrCat("the job's kept solutions hold ", restored, " layers; the model has ",
                                              model.config().num_layers));
    phases_.setup = SecondsSince(start);
    QSHARD_RETURN_IF_ERROR(Timed(phases_.start_workers, [&] { return StartWorkers(seqlen, restored); }));
    const json device_plans = DevicePlans();
    if (!device_plans.empty()) events_.device_plan(device_plans);
    if (needs_.input_stats)
      events_.log(absl::StrFormat("calibration: %d windows of %d tokens from %s, seed %d, %d shards on %d workers",
                                  spec_.calibration.nsamples, seqlen, spec_.calibration.text, spec_.calibration.seed,
                                  shards_, workers_.size()));

    GptqExportSpec exported = ExportSpecOf(spec_);
    if (method->group_size_of != nullptr) {
      QSHARD_ASSIGN_OR_RETURN(exported.module_group_sizes,
                              PlanModuleGroupSizes(*source_, *method, spec_.method, skipped_, events_.log));
    }
    std::unique_ptr<GptqCheckpointWriter> writer;
    if (!method->flattens_inputs) {
      QSHARD_ASSIGN_OR_RETURN(writer, GptqCheckpointWriter::Create(spec_.out_dir, *source_model_.checkpoint, model,
                                                                   exported, skipped_));
    }
    std::vector<std::pair<DecoderLayerWeights, QuantizedLayer>> unwritten;  // flattens_inputs: written at the end
    json modules = json::array();
    double seconds_solve = 0.0;
    const int layers = model.config().num_layers;
    for (int layer = 0; layer < layers; ++layer) {
      const auto layer_start = Clock::now();
      const bool was_restored = layer < restored;
      QuantizedLayer quantized;
      DecoderLayerWeights weights;
      if (was_restored) {
        QSHARD_RETURN_IF_ERROR(WithContext(RestoreLayer(layer, weights, quantized),
                                           absl::StrCat("layer ", layer, " (kept from an earlier run)")));
      } else {
        std::vector<GroupSolution> solutions;
        QSHARD_RETURN_IF_ERROR(WithContext(QuantizeLayerSurvivingLosses(layer, weights, quantized, solutions),
                                           absl::StrCat("layer ", layer)));
        if (kept_ != nullptr) QSHARD_RETURN_IF_ERROR(kept_->Save(layer, solutions));
        finished_ = layer + 1;
      }
      if (writer)
        QSHARD_RETURN_IF_ERROR(Timed(phases_.write, [&] { return writer->WriteLayer(layer, weights, quantized.linears); }));
      for (const LinearReport& r : quantized.reports) {
        seconds_solve += r.seconds;
        modules.push_back(ReportRow(layer, r, quantized.linears));
        if (was_restored) continue;
        observer().LinearSolved(spec_.method.method, r);
        events_.log(absl::StrFormat(
            "layer %d/%d %-20s rel.error %s  %.2f s%s", layer + 1, layers, r.name,
            std::isnan(r.relative_error) ? "n/a" : absl::StrFormat("%.3e", r.relative_error), r.seconds,
            r.damp_retries > 0 ? absl::StrFormat("  (damp raised to %g)", r.damp_used) : ""));
      }
      if (!was_restored) observer().BlockSolved(spec_.method.method, SecondsSince(layer_start));
      events_.log(absl::StrFormat("layer %d/%d %s in %.2f s", layer + 1, layers,
                                  was_restored ? "restored from its kept solutions" : "done",
                                  SecondsSince(layer_start)));
      events_.layer_done({layer, layers, SecondsSince(layer_start), SecondsSince(start)});
      if (!writer) {
        // The float weights of quantized linears are not exported: keep only codes, biases, norms.
        for (const auto& [name, q] : quantized.linears) weights.linears.at(name).weight = Tensor();
        unwritten.emplace_back(std::move(weights), std::move(quantized));
      }
    }
    Started(layers, JobPhase::kWriting, {}, {});
    if (!writer) {
      const auto write_start = Clock::now();
      QSHARD_ASSIGN_OR_RETURN(writer, WriteHeldLayers(unwritten));
      phases_.write += SecondsSince(write_start);
    }
    json report = JobSpecJson(spec_, seqlen);
    report["devices"] = devices;
    report["device_roles"] = DeviceRolesJson(device_plan, device);
    if (!device_plans.empty()) report["device_plan"] = device_plans;
    report["plan"] = plan.ToJson();
    report["modules"] = modules;
    // Timed up to here: Finish writes the index, configs and this report after it is made.
    report["summary"] = Summary(modules, SecondsSince(start), seconds_solve, phases_);
    QSHARD_RETURN_IF_ERROR(writer->Finish(report));
    if (!spec_.validation.text.empty()) {
      QSHARD_ASSIGN_OR_RETURN(report["validation"], Validate());
      QSHARD_RETURN_IF_ERROR(WriteFileAtomically(spec_.out_dir + "/quant_report.json", report.dump(2) + "\n"));
    }
    return report;
  }

 private:
  // Each worker's device, in worker order. A checkpoint depends on the device kind that
  // collected its statistics and solved it (conventions.md), so one job never mixes kinds:
  // which worker solves which group must not change its bytes.
  absl::StatusOr<json> WorkerDevices() {
    json devices = json::array();
    std::set<std::string> kinds;
    for (WorkerClient* worker : workers_) {
      const std::string name = worker->DeviceName();
      devices.push_back(name);
      kinds.insert(name.substr(0, name.find(':')));
    }
    if (kinds.size() > 1)
      return absl::FailedPreconditionError(absl::StrCat("the job's workers run on different device kinds (",
                                                        devices.dump(), "): its checkpoint would depend on which "
                                                        "worker solved what; give a job workers of one kind"));
    return devices;
  }

  // The validation's device, refused before any work when it cannot run the checkpoint or, on
  // a worker, when the job's workers (`device`, all of one kind) are not of the kind asked for.
  absl::Status CheckValidationSite(const Device& device, const json& devices) const {
    if (!validation_.on_worker)
      return validation_.device == nullptr ? absl::OkStatus()
                                           : CheckValidationRunsOnDevice(spec_.method, validation_.device->device());
    if (validation_.worker_kind.has_value() && *validation_.worker_kind != device.kind) {
      const std::string kind = *validation_.worker_kind == Device::Kind::kCpu ? "cpu" : "cuda";
      return absl::FailedPreconditionError(
          absl::StrCat("--validate-device ", kind, ": no worker of the job runs on ", kind, " (its workers' devices: ",
                       devices.dump(), "); give the job workers of that kind or validate on the coordinator"));
    }
    return CheckValidationRunsOnDevice(spec_.method, device, ValidationAt::kWorker);
  }

  // The spec's validation where `validation_` says. On the workers: the first live one, and
  // each next live one in turn while they are lost on the way (UNAVAILABLE); any other error is
  // the job's. A coordinator restart redoes it: the kept layers are restored, not solved again.
  absl::StatusOr<json> Validate() {
    Started(source_->config().num_layers, JobPhase::kValidating, {}, {});
    const std::string through = absl::StrCat("validating on ", spec_.validation.text, " through the integer kernels of ");
    if (!validation_.on_worker) {
      events_.log(through + (validation_.device == nullptr ? "the CPU" : validation_.device->Describe()));
      return ValidateCheckpoint(spec_, validation_.device);
    }
    for (size_t i : Alive()) {
      const std::string who = absl::StrCat("worker ", i, " (", workers_[i]->DeviceName(), ")");
      events_.log(through + who);
      absl::StatusOr<json> validated = workers_[i]->Validate(spec_);
      if (validated.ok()) return validated;
      if (!absl::IsUnavailable(validated.status())) return WithContext(validated.status(), who);
      MarkLost(i);
      events_.log(absl::StrCat("validation: ", who, " lost: ", validated.status().message()));
    }
    return absl::UnavailableError("validation: every worker of the job was lost");
  }

  // Gives each worker its shards. After a restart, workers start empty, adopt their shards and
  // replay the `restored` kept layers over them to reach the first unfinished layer's inputs.
  absl::Status StartWorkers(int64_t seqlen, int restored) {
    alive_.assign(workers_.size(), true);
    for (size_t i = 0; i < workers_.size(); ++i)
      shards_of_.push_back(ShardsOfWorker(shards_, static_cast<int>(workers_.size()), static_cast<int>(i)));
    const bool replay = restored > 0 && shards_ > 0;
    QSHARD_RETURN_IF_ERROR(ForEachWorker([&](size_t i, WorkerClient& worker) {
      return worker.StartJob(spec_, seqlen, replay ? std::vector<int>() : shards_of_[i]);
    }));
    finished_ = restored;
    if (restored == 0) return absl::OkStatus();
    events_.log(absl::StrCat("resuming: layers 1-", restored, " were finished by an earlier run",
                             replay ? "; the workers replay them over their shards" : ""));
    return replay ? AdoptAndReplay(shards_of_) : absl::OkStatus();
  }

  // What each worker keeps on its device (worker order, as `devices`), each logged: empty on the CPU.
  json DevicePlans() {
    json plans = json::array();
    for (size_t i = 0; i < workers_.size(); ++i) {
      json plan = workers_[i]->DeviceMemory();
      if (plan.is_null()) continue;
      const std::string line = plan.value("summary", "");
      events_.log(workers_.size() == 1 ? line : absl::StrCat("worker ", i, " (", workers_[i]->DeviceName(), "): ", line));
      plan["worker"] = i;
      plans.push_back(std::move(plan));
    }
    return plans;
  }

  // Worker i takes `adopted[i]` and replays the finished layers over them, one layer read from
  // the kept store at a time.
  absl::Status AdoptAndReplay(const std::vector<std::vector<int>>& adopted) {
    const auto adopting = [&](size_t i) { return !adopted[i].empty(); };
    for (size_t i = 0; i < adopted.size(); ++i)
      if (adopting(i)) events_.log(absl::StrCat("worker ", i, " adopts ", adopted[i].size(), " shards"));
    QSHARD_RETURN_IF_ERROR(ForEachWorker([&](size_t i, WorkerClient& w) {
      return adopting(i) ? w.AdoptShards(adopted[i]) : absl::OkStatus();
    }));
    for (int layer = 0; layer < finished_; ++layer) {
      QSHARD_ASSIGN_OR_RETURN(const std::vector<GroupSolution> solutions, kept_->Load(layer));
      QSHARD_RETURN_IF_ERROR(ForEachWorker([&](size_t i, WorkerClient& w) {
        return adopting(i) ? w.ReplayLayer(layer, solutions) : absl::OkStatus();
      }));
    }
    return absl::OkStatus();
  }

  // A layer finished by an earlier run, from its kept solutions.
  absl::Status RestoreLayer(int layer, DecoderLayerWeights& weights, QuantizedLayer& quantized) {
    Started(layer, JobPhase::kRestoring, {}, {});
    QSHARD_ASSIGN_OR_RETURN(weights, source_->LoadLayer(layer));
    QSHARD_ASSIGN_OR_RETURN(std::vector<GroupSolution> solutions, kept_->Load(layer));
    for (GroupSolution& solution : solutions)
      QSHARD_RETURN_IF_ERROR(ApplyGroupSolution(std::move(solution), weights, quantized));
    return absl::OkStatus();
  }

  // The checkpoint of layers held until every linear's exported width was known.
  absl::StatusOr<std::unique_ptr<GptqCheckpointWriter>> WriteHeldLayers(
      const std::vector<std::pair<DecoderLayerWeights, QuantizedLayer>>& unwritten) {
    GptqExportSpec exported = ExportSpecOf(spec_);
    for (size_t layer = 0; layer < unwritten.size(); ++layer)
      for (const auto& [name, q] : unwritten[layer].second.linears)
        exported.flattened[source_->tensor_names().Layer(static_cast<int>(layer)) + name] = {q.bits, q.act_bits, q.cols};
    QSHARD_ASSIGN_OR_RETURN(auto writer, GptqCheckpointWriter::Create(spec_.out_dir, *source_model_.checkpoint, *source_,
                                                                      exported, skipped_));
    for (size_t layer = 0; layer < unwritten.size(); ++layer)
      QSHARD_RETURN_IF_ERROR(writer->WriteLayer(static_cast<int>(layer), unwritten[layer].first, unwritten[layer].second.linears));
    return writer;
  }

  // QuantizeLayer, redone after moving the shards of workers lost on the way to the
  // survivors; gives up when no worker is left.
  absl::Status QuantizeLayerSurvivingLosses(int layer, DecoderLayerWeights& weights, QuantizedLayer& quantized,
                                            std::vector<GroupSolution>& solutions) {
    absl::Cleanup forget = [this] { solved_before_loss_.clear(); };
    for (;;) {
      QSHARD_ASSIGN_OR_RETURN(weights, source_->LoadLayer(layer));
      quantized = QuantizedLayer();
      solutions.clear();
      absl::Status status = QuantizeLayer(layer, weights, quantized, solutions);
      if (status.ok() || !absl::IsUnavailable(status) || AliveCount() == 0) return status;
      events_.log(absl::StrCat("layer ", layer, ": ", status.message(), "; moving its shards and redoing the layer"));
      observer().LayerRedone();
      QSHARD_RETURN_IF_ERROR(MoveShardsOfLostWorkers());
    }
  }

  // One layer on the workers; `weights` and `quantized` (the stitcher's copy) end up as the
  // quantized layer to write, `solutions` as the groups' solutions in order when a store keeps them.
  absl::Status QuantizeLayer(int layer, DecoderLayerWeights& weights, QuantizedLayer& quantized,
                             std::vector<GroupSolution>& solutions) {
    QSHARD_RETURN_IF_ERROR(ForEachWorker([&](size_t, WorkerClient& w) { return w.BeginLayer(layer); }));
    const std::vector<std::vector<std::string>> groups = source_->LinearGroups();
    const bool calibrated = shards_ > 0;
    const bool parallel = spec_.calibration.propagation == Propagation::kParallel;
    std::vector<GroupStatistics> statistics(groups.size());
    std::vector<int> wanted;  // the groups with a linear to quantize
    for (int g = 0; g < static_cast<int>(groups.size()); ++g)
      for (const std::string& linear : groups[g])
        if (!skipped_.count(linear)) {
          wanted.push_back(g);
          break;
        }
    if (calibrated && parallel) {
      std::vector<int> all(groups.size());
      for (size_t g = 0; g < groups.size(); ++g) all[g] = static_cast<int>(g);
      Started(layer, JobPhase::kCalibrating, groups, wanted);
      QSHARD_ASSIGN_OR_RETURN(statistics, CollectAndReduce(layer, all, needs_.attention_stats));
    }
    // On the full-precision layer, a method whose linears are independent (so no group rewrites
    // another) has nothing between its groups: every group is solved at once, owners in parallel.
    std::map<int, GroupSolution> solved;
    if (calibrated && parallel && method_->independent_linears) {
      Started(layer, JobPhase::kSolving, groups, wanted);
      QSHARD_ASSIGN_OR_RETURN(solved, SolveOnOwners(layer, wanted, groups, statistics));
      statistics.clear();  // free the Hessians
    }
    for (int g : wanted) {
      if (events_.cancelled != nullptr && events_.cancelled->load()) return absl::CancelledError("job cancelled");
      if (!solved.count(g)) {
        if (calibrated && !parallel) {
          Started(layer, JobPhase::kCalibrating, groups, {g});
          QSHARD_ASSIGN_OR_RETURN(std::vector<GroupStatistics> one,
                                  CollectAndReduce(layer, {g}, needs_.attention_stats && g == 0));
          statistics[g] = std::move(one.front());
        }
        Started(layer, JobPhase::kSolving, groups, {g});
        const auto solve_start = Clock::now();
        if (auto kept = solved_before_loss_.find(g); kept != solved_before_loss_.end()) {
          solved = {{g, kept->second}};  // solved before a worker was lost: the same bits again
        } else {
          QSHARD_ASSIGN_OR_RETURN(solved, SolveOnOwners(layer, {g}, groups, statistics));
        }
        observer().GroupSolved(spec_.method.method, g, SecondsSince(solve_start));
        if (calibrated) statistics[g] = GroupStatistics();  // free the Hessians
      }
      GroupSolution& solution = solved.at(g);
      Started(layer, JobPhase::kPropagating, groups, {g});
      QSHARD_RETURN_IF_ERROR(Timed(phases_.propagation, [&] {
        return ForEachWorker([&](size_t, WorkerClient& w) { return w.Apply(g, solution); });
      }));
      if (kept_ != nullptr) solutions.push_back(solution);  // only a store reads them: no copy otherwise
      QSHARD_RETURN_IF_ERROR(ApplyGroupSolution(std::move(solution), weights, quantized));
    }
    Started(layer, JobPhase::kPropagating, groups, {});
    return Timed(phases_.propagation,
                 [&] { return ForEachWorker([](size_t, WorkerClient& w) { return w.FinishLayer(); }); });
  }

  // Tells the watchers that `phase` starts on the quantized linears of `layer`'s groups `of`
  // (none: the whole layer; `layer` past the last: the whole checkpoint).
  void Started(int layer, JobPhase phase, const std::vector<std::vector<std::string>>& groups,
               const std::vector<int>& of) {
    ModuleProgress progress{layer, static_cast<int>(source_->config().num_layers), {}, phase};
    for (int g : of)
      for (const std::string& linear : groups[g])
        if (!skipped_.count(linear)) progress.linears.push_back(linear);
    events_.module_started(progress);
  }

  // Solves `to_solve` (groups of `layer`, each from statistics[g], or none for a method without
  // calibration) on their owners (owner_solves.h).
  absl::StatusOr<std::map<int, GroupSolution>> SolveOnOwners(int layer, const std::vector<int>& to_solve,
                                                             const std::vector<std::vector<std::string>>& groups,
                                                             const std::vector<GroupStatistics>& statistics) {
    const auto start = Clock::now();
    absl::Cleanup timed = [&] { phases_.solve += SecondsSince(start); };
    OwnerSolves request;
    request.layer = layer;
    request.groups = &groups;
    request.skipped = &skipped_;
    request.sizes = &linear_sizes_;
    request.method = method_;
    request.statistics = statistics.empty() || shards_ == 0 ? nullptr : &statistics;
    request.workers = &workers_;
    request.alive = Alive();
    request.heads = &linear_heads_;
    SolvedGroups solved = qshard::SolveOnOwners(request, to_solve);
    for (size_t worker : solved.lost) MarkLost(worker);
    if (auto holder = solved.status.GetPayload(WorkerClient::kUnreadableHolderPayload)) {
      // A solver could not read its group's owner: the owner is lost, and the layer redone.
      for (size_t i = 0; i < workers_.size(); ++i)
        if (workers_[i]->DataAddress() == std::string(*holder)) MarkLost(i);
      return absl::UnavailableError(solved.status.message());
    }
    QSHARD_RETURN_IF_ERROR(solved.status);
    if (!solved.lost.empty()) {
      // The survivors redid the lost workers' parts, but the lost shards must move before the
      // next collection: the layer is redone, and these groups are not solved again.
      for (auto& [g, solution] : solved.solutions) solved_before_loss_[g] = std::move(solution);
      return absl::UnavailableError(absl::StrCat("layer ", layer, ": a worker was lost while solving"));
    }
    return std::move(solved.solutions);
  }

  std::vector<size_t> Alive() const {
    std::vector<size_t> alive;
    for (size_t i = 0; i < workers_.size(); ++i)
      if (alive_[i]) alive.push_back(i);
    return alive;
  }
  size_t AliveCount() const { return Alive().size(); }
  void MarkLost(size_t worker) {
    if (alive_[worker]) observer().WorkerLost();
    alive_[worker] = false;
  }
  JobObserver& observer() const {
    static JobObserver nobody;  // its hooks do nothing
    return events_.observer != nullptr ? *events_.observer : nobody;
  }

  // Calls `call` on every live worker, concurrently when there are several. A worker whose call
  // fails with UNAVAILABLE is lost; the first error (in worker order) is returned. `call` runs on
  // threads of its own, so it must not reach events_: JobEvents promises its callbacks this
  // thread alone.
  absl::Status ForEachWorker(const std::function<absl::Status(size_t, WorkerClient&)>& call) {
    const std::vector<size_t> alive = Alive();
    std::vector<absl::Status> results(alive.size());
    if (alive.size() == 1) {
      results[0] = call(alive[0], *workers_[alive[0]]);
    } else {
      std::vector<std::thread> threads;
      for (size_t k = 0; k < alive.size(); ++k)
        threads.emplace_back([&, k] { results[k] = call(alive[k], *workers_[alive[k]]); });
      for (std::thread& t : threads) t.join();
    }
    for (size_t k = 0; k < alive.size(); ++k)
      if (absl::IsUnavailable(results[k])) MarkLost(alive[k]);
    for (const absl::Status& status : results) QSHARD_RETURN_IF_ERROR(status);
    return absl::OkStatus();
  }

  // Every live worker's partials of `groups`, added along the shard tree into one statistics
  // value per group: by the runner for in-process workers, else by each group's owner, which
  // pulls the partials from the workers holding them (the values then stay on the owner; the
  // runner gets handles naming it).
  absl::StatusOr<std::vector<GroupStatistics>> CollectAndReduce(int layer, const std::vector<int>& groups,
                                                                bool attention) {
    const auto start = Clock::now();
    absl::Cleanup timed = [&] { phases_.calibration += SecondsSince(start); };
    std::vector<std::vector<ShardStatistics>> partials(workers_.size());
    QSHARD_RETURN_IF_ERROR(ForEachWorker([&](size_t i, WorkerClient& worker) -> absl::Status {
      QSHARD_ASSIGN_OR_RETURN(partials[i], worker.CollectStatistics(groups, attention));
      return absl::OkStatus();
    }));
    if (!OwnersReduce()) {
      std::vector<ShardStatistics> nodes;
      for (auto& worker_partials : partials)
        for (ShardStatistics& node : worker_partials) nodes.push_back(std::move(node));
      return ReduceShardTree(std::move(nodes), shards_, groups.size());
    }
    std::vector<StatisticsSource> sources;
    std::vector<size_t> holder_of;  // by source
    for (size_t i = 0; i < workers_.size(); ++i)
      for (const ShardStatistics& node : partials[i]) {
        sources.push_back({workers_[i]->DataAddress(), node.first_shard, node.shard_count});
        holder_of.push_back(i);
      }
    const size_t layer_groups = source_->LinearGroups().size();
    const std::vector<size_t> alive = Alive();
    std::map<size_t, std::vector<int>> groups_of;  // by owner
    for (int g : groups) groups_of[OwnerOf(layer, g, layer_groups, alive)].push_back(g);
    std::map<size_t, absl::Status> status_of;
    std::map<size_t, std::optional<size_t>> unreachable_of;
    {
      std::vector<std::thread> threads;
      for (const auto& [owner, owned] : groups_of)
        threads.emplace_back([&, owner = owner, owned = &owned, status = &status_of[owner],
                              unreachable = &unreachable_of[owner]] {
          for (int g : *owned) {
            *status = workers_[owner]->ReduceStatistics(g, shards_, sources, unreachable);
            if (!status->ok()) return;
          }
        });
      for (std::thread& t : threads) t.join();
    }
    // A holder that could not be read is lost, not the owner that tried to read it.
    for (auto& [owner, status] : status_of) {
      if (unreachable_of[owner]) {
        MarkLost(holder_of[*unreachable_of[owner]]);
        status = absl::UnavailableError(absl::StrCat("worker ", holder_of[*unreachable_of[owner]],
                                                     " could not be read: ", status.message()));
      } else if (absl::IsUnavailable(status)) {
        MarkLost(owner);
      }
    }
    for (const auto& [owner, status] : status_of) QSHARD_RETURN_IF_ERROR(status);
    std::vector<GroupStatistics> handles(groups.size());
    for (size_t k = 0; k < groups.size(); ++k)
      handles[k].held_at = workers_[OwnerOf(layer, groups[k], layer_groups, alive)]->DataAddress();
    return handles;
  }

  // Whether groups' owners reduce their statistics: every worker serves its partials.
  bool OwnersReduce() const {
    for (WorkerClient* worker : workers_)
      if (worker->DataAddress().empty()) return false;
    return true;
  }

  // Hands the shards of lost workers, round robin, to the survivors, which rebuild their hidden
  // states by replaying the finished layers.
  absl::Status MoveShardsOfLostWorkers() {
    for (;;) {
      const std::vector<size_t> alive = Alive();
      if (alive.empty()) return absl::UnavailableError("every worker was lost");
      std::vector<std::vector<int>> adopted(workers_.size());
      size_t next = 0;
      for (size_t i = 0; i < workers_.size(); ++i) {
        if (alive_[i]) continue;
        for (int shard : shards_of_[i]) adopted[alive[next++ % alive.size()]].push_back(shard);
        shards_of_[i].clear();
      }
      const absl::Status status = AdoptAndReplay(adopted);
      for (size_t i : alive)
        if (alive_[i]) shards_of_[i].insert(shards_of_[i].end(), adopted[i].begin(), adopted[i].end());
      if (status.ok() || !absl::IsUnavailable(status)) return status;
    }
  }

  // Runs `step`, adding its wall seconds to `phase`.
  static absl::Status Timed(double& phase, const std::function<absl::Status()>& step) {
    const auto start = Clock::now();
    absl::Status status = step();
    phase += SecondsSince(start);
    return status;
  }

  const JobSpec& spec_;
  const std::vector<WorkerClient*>& workers_;
  JobPhases phases_;
  const JobEvents& events_;
  const ValidationSite validation_;
  const MethodRegistration* method_ = nullptr;
  MethodNeeds needs_;
  SourceModel source_model_;
  const DecoderModel* source_ = nullptr;
  std::set<std::string> skipped_;
  std::map<std::string, uint64_t> linear_sizes_;  // rows × columns of each linear of a layer
  std::map<std::string, int> linear_heads_;        // heads of each linear the method splits by head
  // The current layer's groups solved before a worker was lost (by group), kept for its redo.
  std::map<int, GroupSolution> solved_before_loss_;
  int shards_ = 0;
  std::vector<bool> alive_;                         // per worker
  std::vector<std::vector<int>> shards_of_;         // per worker: the shards it holds
  FinishedLayerStore* kept_ = nullptr;  // the finished layers' solutions; null: none kept
  int finished_ = 0;                     // layers finished so far
};

}  // namespace

absl::StatusOr<json> RunJob(const JobSpec& spec, const std::vector<WorkerClient*>& workers, const JobEvents& events,
                            const ValidationSite& validation) {
  return Job(spec, workers, events, validation).Run();
}

absl::StatusOr<json> RunEmbeddedJob(const JobSpec& spec, const JobEvents& events, const Device& device,
                                    std::optional<Device> validation_device) {
  QSHARD_RETURN_IF_ERROR(ValidateJobSpec(spec));
  QSHARD_ASSIGN_OR_RETURN(const DevicePlan device_plan, PlanOnDevice(spec.method, device));
  QSHARD_ASSIGN_OR_RETURN(const JobPlan plan, PlanJobForModel(spec, 1));
  QSHARD_RETURN_IF_ERROR(CheckEmbeddedPlanFits(plan, PhysicalMemoryBytes()));
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<CudaDevice> opened, OpenDevice(device));
  if (opened != nullptr)
    events.log(absl::StrCat(spec.method.method, " on ", opened->Describe(), ": ", DescribePlan(device_plan)));
  // The validation's device, opened before any work too; the job's own when it is the same.
  std::shared_ptr<CudaDevice> validator = opened;
  if (!spec.validation.text.empty() && validation_device.has_value() &&
      DeviceName(*validation_device) != DeviceName(device)) {
    auto other = OpenDevice(*validation_device);
    if (!other.ok()) return WithContext(other.status(), "--validate-device");
    validator = *std::move(other);
  }
  LocalWorker worker(/*threads=*/0, /*restartable=*/false, std::move(opened));
  return RunJob(spec, {&worker}, events, validator.get());
}

}  // namespace qshard
