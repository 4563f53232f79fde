// Runs the coordinator's jobs one at a time on a background thread, in submission order, and
// keeps the journal and the WatchJob streams told. Every state change is committed to the
// journal before it is published, and publishing happens under the same lock as watching
// starts, so a watcher sees each job's states in order, beginning with the current one.
//
// Where a job runs is one function, the JobExecutor: RunJob on the pool's workers, or embedded
// (RunEmbeddedJob). A running job keeps its finished layers' solutions under the state dir
// (finished_layer_dir.h), so after a coordinator restart it resumes without solving them again;
// they are removed when the job ends.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "coordinator/allowed_roots.h"
#include "coordinator/finished_layer_dir.h"
#include "coordinator/journal.h"
#include "engine/job_runner.h"
#include "qshard.pb.h"

namespace qshard {

using JobExecutor = std::function<absl::StatusOr<nlohmann::json>(const JobSpec&, const JobEvents&)>;

// An output the coordinator would write and, on cancel or failure, remove must not exist yet or
// be an empty directory; FAILED_PRECONDITION naming output_path otherwise. Checked at
// submission and again when the job starts.
absl::Status CheckOutputIsFree(const std::string& out_dir);

// The coordinator's executor: the job in this process, through RunEmbeddedJob.
absl::StatusOr<nlohmann::json> RunCoordinatorJob(const JobSpec& spec, const JobEvents& events);

class JobScheduler {
 public:
  using Listener = std::function<void(const v1::JobStatus&)>;
  using Log = std::function<void(const std::string&)>;

  // Jobs keep their finished layers in `layers_root`/<job id>. `observer` (optional) is told of
  // each job's engine events and end, for metrics.
  JobScheduler(Journal& journal, const AllowedRoots& roots, std::string layers_root, JobExecutor executor, Log log,
               JobObserver* observer = nullptr);
  ~JobScheduler() { Stop(); }

  // Recovers the journal's unfinished jobs (a RUNNING job is queued again and resumes after its
  // kept layers, a CANCELLING one is cancelled) and starts the background thread.
  absl::Status Start();
  // Stops the running job without changing its journal state (the next start re-queues it).
  void Stop();

  // A job the journal has just created, in state QUEUED.
  void Enqueue(const JobRecord& job);
  // QUEUED: CANCELLED at once. RUNNING: CANCELLING until the job stops. CANCELLING: unchanged.
  // Finished: FAILED_PRECONDITION.
  absl::StatusOr<v1::JobStatus> Cancel(const std::string& job_id);
  absl::StatusOr<v1::JobStatus> Status(const std::string& job_id);
  v1::JobStatus StatusOf(const JobRecord& job);

  // Calls `listener` with the job's current status, then with every change until Unwatch.
  // Listeners run under the scheduler's lock: they must not call back into it.
  absl::StatusOr<int64_t> Watch(const std::string& job_id, Listener listener);
  void Unwatch(int64_t token);

 private:
  struct Running {
    std::string job_id;
    std::atomic<bool> cancel{false};
    std::chrono::steady_clock::time_point start;
    std::optional<v1::JobModule> module;  // what the engine works on now; mu_ guards it
    nlohmann::json device_plan;           // the workers' device plans once known (JobEvents); mu_ too
  };

  void Loop();
  void RunOne(const std::string& job_id);
  // Commits the change and tells the job's watchers; mu_ held.
  absl::StatusOr<JobRecord> TransitionLocked(const std::string& job_id, const Journal::Change& change);
  void PublishLocked(const JobRecord& job);
  v1::JobStatus StatusOfLocked(const JobRecord& job);
  // Removes a job's output directory (only ever under the allowed roots).
  absl::Status RemoveOutput(const JobRecord& job);
  FinishedLayerDir FinishedLayersOf(const std::string& job_id) const;

  Journal& journal_;
  const AllowedRoots& roots_;
  std::string layers_root_;
  JobExecutor executor_;
  Log log_;
  JobObserver* observer_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  std::shared_ptr<Running> running_;
  bool stop_ = false;
  std::multimap<std::string, std::pair<int64_t, Listener>> listeners_;
  int64_t next_token_ = 1;
  std::thread thread_;
};

}  // namespace qshard
