#include "coordinator/job_scheduler.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "remote/job_spec_proto.h"

namespace qshard {
namespace {

using nlohmann::json;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void AddLinears(const json& report, v1::JobStatus& status) {
  if (!report.contains("modules")) return;
  for (const json& m : report["modules"]) {
    v1::LinearResult& linear = *status.add_linears();
    linear.set_layer(m.value("layer", 0));
    linear.set_name(m.value("name", ""));
    if (m["relative_error"].is_number()) linear.set_relative_error(m["relative_error"].get<double>());
    linear.set_seconds(m.value("seconds", 0.0));
    linear.set_damp_used(m.value("damp_used", 0.0));
    linear.set_damp_retries(m.value("damp_retries", 0));
  }
}

// The report's "validation", when the job validated its checkpoint.
void AddValidation(const json& report, v1::JobStatus& status) {
  if (!report.contains("validation") || !report["validation"].is_object()) return;
  const json& v = report["validation"];
  v1::ValidationResult& result = *status.mutable_validation();
  result.set_perplexity(v.value("perplexity", 0.0));
  result.set_base_perplexity(v.value("base_perplexity", 0.0));
  result.set_kl_divergence(v.value("kl_divergence", 0.0));
  result.set_top1_agreement(v.value("top1_agreement", 0.0));
  result.set_device(v.value("device", "cpu"));
  result.set_kernels(v.value("kernels", ""));
}

// Each worker's device plan line, from `plans` (the report's device_plan array, also what a
// running job's JobEvents::device_plan gave): none on the CPU.
void AddDevicePlan(const json& plans, v1::JobStatus& status) {
  if (!plans.is_array()) return;
  for (const json& plan : plans)
    if (plan.is_object()) status.add_device_plan(plan.value("summary", ""));
}

v1::JobModule ModuleOf(const ModuleProgress& progress) {
  v1::JobModule module;
  module.set_layer(progress.layer);
  for (const std::string& linear : progress.linears) module.add_linears(linear);
  switch (progress.phase) {
    case JobPhase::kCalibrating: module.set_phase(v1::JOB_PHASE_CALIBRATING); break;
    case JobPhase::kSolving: module.set_phase(v1::JOB_PHASE_SOLVING); break;
    case JobPhase::kPropagating: module.set_phase(v1::JOB_PHASE_PROPAGATING); break;
    case JobPhase::kRestoring: module.set_phase(v1::JOB_PHASE_RESTORING); break;
    case JobPhase::kWriting: module.set_phase(v1::JOB_PHASE_WRITING); break;
    case JobPhase::kValidating: module.set_phase(v1::JOB_PHASE_VALIDATING); break;
  }
  return module;
}

}  // namespace

absl::Status CheckOutputIsFree(const std::string& out_dir) {
  std::error_code ec;
  if (!std::filesystem::exists(out_dir, ec)) return absl::OkStatus();
  if (std::filesystem::is_directory(out_dir, ec) && std::filesystem::is_empty(out_dir, ec)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("output_path: ", out_dir, " already exists and is not an empty directory"));
}

absl::StatusOr<json> RunCoordinatorJob(const JobSpec& spec, const JobEvents& events) {
  return RunEmbeddedJob(spec, events);
}

JobScheduler::JobScheduler(Journal& journal, const AllowedRoots& roots, std::string layers_root, JobExecutor executor,
                           Log log, JobObserver* observer)
    : journal_(journal),
      roots_(roots),
      layers_root_(std::move(layers_root)),
      executor_(std::move(executor)),
      log_(std::move(log)),
      observer_(observer) {}

FinishedLayerDir JobScheduler::FinishedLayersOf(const std::string& job_id) const {
  return FinishedLayerDir(layers_root_ + "/" + job_id);
}

absl::Status JobScheduler::Start() {
  QSHARD_ASSIGN_OR_RETURN(const std::vector<JobRecord> unfinished, journal_.Unfinished());
  std::lock_guard<std::mutex> lock(mu_);
  for (JobRecord job : unfinished) {
    if (job.state == v1::JOB_STATE_RUNNING || job.state == v1::JOB_STATE_CANCELLING) {
      // The output is written again from the kept layers: what the crash left there goes.
      const bool cancel = job.state == v1::JOB_STATE_CANCELLING;
      const absl::Status removed = RemoveOutput(job);
      const int kept = FinishedLayersOf(job.job_id).CountKept().value_or(0);
      Journal::Change change{cancel ? v1::JOB_STATE_CANCELLED : v1::JOB_STATE_QUEUED,
                             cancel ? "cancelled across a coordinator restart"
                                    : absl::StrCat("coordinator restarted: the job resumes after its ", kept,
                                                   " finished layers")};
      if (!removed.ok()) change = {v1::JOB_STATE_FAILED, "restart", std::string(removed.message())};
      QSHARD_ASSIGN_OR_RETURN(job, TransitionLocked(job.job_id, change));
      log_(absl::StrCat(job.job_id, ": ", change.note));
    }
    if (job.state == v1::JOB_STATE_QUEUED) queue_.push_back(job.job_id);
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void JobScheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    if (running_) running_->cancel = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void JobScheduler::Enqueue(const JobRecord& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job.job_id);
  }
  wake_.notify_all();
}

void JobScheduler::Loop() {
  while (true) {
    std::string job_id;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job_id = queue_.front();
      queue_.pop_front();
    }
    RunOne(job_id);
  }
}

void JobScheduler::RunOne(const std::string& job_id) {
  auto running = std::make_shared<Running>();
  running->job_id = job_id;
  JobSpec spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<JobRecord> job = journal_.Get(job_id);
    if (!job.ok() || job->state != v1::JOB_STATE_QUEUED) return;  // cancelled while queued
    absl::StatusOr<JobSpec> parsed = JobSpecFromBytes(job->spec);
    absl::Status usable = parsed.status();
    if (usable.ok()) usable = roots_.Check(parsed->model_dir, "model_path");  // again: links may have moved
    if (usable.ok()) usable = roots_.Check(parsed->out_dir, "output_path");
    if (usable.ok() && !parsed->validation.text.empty())  // read by a worker too (--validate-on worker)
      usable = roots_.Check(parsed->validation.text, "validation.text_path");
    if (usable.ok()) usable = CheckOutputIsFree(parsed->out_dir);  // another job may have written there
    if (!TransitionLocked(job_id, {v1::JOB_STATE_RUNNING, "started"}).ok()) return;
    if (!usable.ok()) {
      TransitionLocked(job_id, {v1::JOB_STATE_FAILED, "refused", std::string(usable.message())}).IgnoreError();
      return;
    }
    spec = *std::move(parsed);
    running->start = std::chrono::steady_clock::now();
    running_ = running;
  }
  log_(absl::StrCat(job_id, ": running"));

  FinishedLayerDir finished_layers = FinishedLayersOf(job_id);
  JobEvents events;
  events.log = [this, job_id](const std::string& line) { log_(absl::StrCat(job_id, ": ", line)); };
  events.cancelled = &running->cancel;
  events.finished_layers = &finished_layers;
  events.observer = observer_;
  events.layer_done = [this, job_id](const LayerProgress& progress) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!journal_.SetProgress(job_id, progress.layer + 1, progress.layers).ok()) return;
    absl::StatusOr<JobRecord> job = journal_.Get(job_id);
    if (job.ok()) PublishLocked(*job);
  };
  // What the running job shows beside its journal record: set under mu_, then told to its watchers.
  const auto show = [this, running](const std::function<void(Running&)>& set) {
    std::lock_guard<std::mutex> lock(mu_);
    set(*running);
    if (listeners_.count(running->job_id) == 0) return;  // GetJob reads it from `running`
    absl::StatusOr<JobRecord> job = journal_.Get(running->job_id);
    if (job.ok()) PublishLocked(*job);
  };
  events.module_started = [show](const ModuleProgress& progress) {
    show([&](Running& r) { r.module = ModuleOf(progress); });
  };
  events.device_plan = [show](const json& plans) { show([&](Running& r) { r.device_plan = plans; }); };
  const absl::StatusOr<json> report = executor_(spec, events);

  std::lock_guard<std::mutex> lock(mu_);
  running_.reset();
  absl::StatusOr<JobRecord> job = journal_.Get(job_id);
  if (!job.ok()) return;
  Journal::Change change;
  if (job->state == v1::JOB_STATE_CANCELLING) {
    const absl::Status removed = RemoveOutput(*job);
    change = removed.ok() ? Journal::Change{v1::JOB_STATE_CANCELLED, "cancelled; output removed"}
                          : Journal::Change{v1::JOB_STATE_FAILED, "cancel", std::string(removed.message())};
  } else if (stop_) {
    log_(absl::StrCat(job_id, ": stopped by shutdown; it restarts with the coordinator"));
    return;
  } else if (report.ok()) {
    change = {v1::JOB_STATE_SUCCEEDED, "succeeded", "", report->dump()};
  } else {
    RemoveOutput(*job).IgnoreError();  // a failed job leaves no half-written checkpoint
    change = {v1::JOB_STATE_FAILED, "failed", std::string(report.status().message())};
  }
  log_(absl::StrCat(job_id, ": ", change.note, change.error.empty() ? "" : ": ", change.error));
  TransitionLocked(job_id, change).IgnoreError();
  if (observer_ != nullptr)
    observer_->JobEnded(job_id, spec, JobStateName(change.to), SecondsSince(running->start),
                        change.to == v1::JOB_STATE_SUCCEEDED ? &*report : nullptr);
}

absl::Status JobScheduler::RemoveOutput(const JobRecord& job) {
  QSHARD_ASSIGN_OR_RETURN(const JobSpec spec, JobSpecFromBytes(job.spec));
  QSHARD_RETURN_IF_ERROR(roots_.Check(spec.out_dir, "output_path"));
  std::error_code ec;
  std::filesystem::remove_all(spec.out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("output_path: cannot remove ", spec.out_dir, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<v1::JobStatus> JobScheduler::Cancel(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(JobRecord job, journal_.Get(job_id));
  if (IsTerminal(job.state))
    return absl::FailedPreconditionError(
        absl::StrCat("job_id: ", job_id, " has already finished (", JobStateName(job.state), ")"));
  if (job.state == v1::JOB_STATE_QUEUED) {
    QSHARD_ASSIGN_OR_RETURN(job, TransitionLocked(job_id, {v1::JOB_STATE_CANCELLED, "cancelled while queued"}));
  } else if (job.state == v1::JOB_STATE_RUNNING) {
    QSHARD_ASSIGN_OR_RETURN(job, TransitionLocked(job_id, {v1::JOB_STATE_CANCELLING, "cancel requested"}));
    if (running_ && running_->job_id == job_id) running_->cancel = true;
  }  // CANCELLING: already on its way
  return StatusOfLocked(job);
}

absl::StatusOr<JobRecord> JobScheduler::TransitionLocked(const std::string& job_id, const Journal::Change& change) {
  QSHARD_ASSIGN_OR_RETURN(JobRecord job, journal_.Transition(job_id, change));
  if (IsTerminal(job.state)) {
    const absl::Status removed = FinishedLayersOf(job_id).Remove();
    if (!removed.ok()) log_(absl::StrCat(job_id, ": cannot remove its kept layers: ", removed.message()));
  }
  PublishLocked(job);
  return job;
}

void JobScheduler::PublishLocked(const JobRecord& job) {
  const auto [first, last] = listeners_.equal_range(job.job_id);
  if (first == last) return;
  const v1::JobStatus status = StatusOfLocked(job);
  for (auto it = first; it != last; ++it) it->second.second(status);
}

absl::StatusOr<v1::JobStatus> JobScheduler::Status(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(const JobRecord job, journal_.Get(job_id));
  return StatusOfLocked(job);
}

v1::JobStatus JobScheduler::StatusOf(const JobRecord& job) {
  std::lock_guard<std::mutex> lock(mu_);
  return StatusOfLocked(job);
}

v1::JobStatus JobScheduler::StatusOfLocked(const JobRecord& job) {
  v1::JobStatus status;
  status.set_job_id(job.job_id);
  status.set_state(job.state);
  status.set_layers_done(job.layers_done);
  status.set_layers_total(job.layers_total);
  status.set_error(job.error);
  status.set_client_request_id(job.client_request_id);
  status.set_created_unix_ms(job.created_ms);
  status.set_report_json(job.report_json);
  if (running_ && running_->job_id == job.job_id && !IsTerminal(job.state)) {
    const double elapsed = SecondsSince(running_->start);
    status.set_seconds(elapsed);
    if (job.layers_done > 0 && job.layers_total > job.layers_done)
      status.set_eta_seconds(elapsed / job.layers_done * (job.layers_total - job.layers_done));
    if (running_->module) *status.mutable_module() = *running_->module;
    AddDevicePlan(running_->device_plan, status);
  }
  if (!job.report_json.empty()) {
    const json report = json::parse(job.report_json, nullptr, /*allow_exceptions=*/false);
    if (report.is_object()) {
      AddLinears(report, status);
      AddValidation(report, status);
      if (report.contains("device_plan")) AddDevicePlan(report["device_plan"], status);
      if (report.contains("summary")) status.set_seconds(report["summary"].value("seconds_total", 0.0));
    }
  }
  return status;
}

absl::StatusOr<int64_t> JobScheduler::Watch(const std::string& job_id, Listener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(const JobRecord job, journal_.Get(job_id));
  listener(StatusOfLocked(job));
  const int64_t token = next_token_++;
  listeners_.emplace(job_id, std::make_pair(token, std::move(listener)));
  return token;
}

void JobScheduler::Unwatch(int64_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = listeners_.begin(); it != listeners_.end(); ++it)
    if (it->second.first == token) {
      listeners_.erase(it);
      return;
    }
}

}  // namespace qshard
