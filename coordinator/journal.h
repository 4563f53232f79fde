// The coordinator's durable record of its jobs: SQLite in WAL mode in the state directory
// (docs/journal.md: schema, versioning and the state diagram). Every change is committed
// before the call returns, so a state the service acknowledged survives a crash. State
// changes are checked against the transition table (job_state.h) inside the transaction and
// recorded in a history table.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/job_state.h"
#include "coordinator/sqlite_db.h"

namespace qshard {

struct JobRecord {
  std::string job_id;             // "job-<n>", n counting up from 1
  int64_t seq = 0;                // n: submission order, the paging key
  std::string client_request_id;  // "" when the client sent none
  std::string spec;               // canonical proto bytes (job_spec_proto.h)
  JobState state = v1::JOB_STATE_QUEUED;
  int layers_done = 0;
  int layers_total = 0;
  std::string error;        // why it failed (or why a restart happened)
  std::string report_json;  // quant_report.json of a finished job
  int64_t created_ms = 0;   // Unix milliseconds
  int64_t updated_ms = 0;
};

struct StateChange {
  JobState from = v1::JOB_STATE_UNSPECIFIED;  // UNSPECIFIED: the submission
  JobState to = v1::JOB_STATE_QUEUED;
  std::string note;
  int64_t at_ms = 0;
};

class Journal {
 public:
  static constexpr int kSchemaVersion = 1;
  static constexpr char kFileName[] = "journal.sqlite";

  // Opens (creating when missing) `state_dir`/journal.sqlite; refuses a newer schema. `vfs`
  // names the SQLite VFS (default ""; the fault tests pass tests/coordinator/fault_vfs.h's).
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& state_dir, const std::string& vfs = "");

  struct Submitted {
    JobRecord job;
    bool created = false;  // false: `client_request_id` was seen before and this is its job
  };
  // A new QUEUED job, or the job already submitted under a non-empty `client_request_id`.
  absl::StatusOr<Submitted> Submit(const std::string& client_request_id, const std::string& spec);

  // The job submitted under a non-empty `client_request_id`, if any.
  absl::StatusOr<std::optional<JobRecord>> FindByRequestId(const std::string& client_request_id);
  // NOT_FOUND naming the job id.
  absl::StatusOr<JobRecord> Get(const std::string& job_id);
  // Up to `limit` jobs submitted after sequence number `after`, oldest first.
  absl::StatusOr<std::vector<JobRecord>> List(int64_t after, int limit);
  // Jobs not in a terminal state, oldest first.
  absl::StatusOr<std::vector<JobRecord>> Unfinished();
  // How many jobs are in each state (states without jobs are absent).
  absl::StatusOr<std::map<JobState, int64_t>> CountByState();

  struct Change {
    JobState to = v1::JOB_STATE_QUEUED;
    std::string note = {};         // recorded in the history
    std::string error = {};        // replaces the job's error when not empty
    std::string report_json = {};  // replaces the job's report when not empty
  };
  // Applies an allowed transition (FAILED_PRECONDITION otherwise) and returns the job after it.
  absl::StatusOr<JobRecord> Transition(const std::string& job_id, const Change& change);
  absl::Status SetProgress(const std::string& job_id, int layers_done, int layers_total);
  absl::StatusOr<std::vector<StateChange>> History(const std::string& job_id);

 private:
  explicit Journal(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}
  absl::Status Migrate();
  absl::StatusOr<JobRecord> GetLocked(const std::string& job_id);
  absl::StatusOr<std::optional<JobRecord>> FindByRequestIdLocked(const std::string& client_request_id);
  absl::StatusOr<std::vector<JobRecord>> Query(const std::string& where, int64_t after, int limit);
  absl::Status AddHistory(int64_t seq, JobState from, JobState to, const std::string& note, int64_t at_ms);

  std::mutex mu_;
  std::unique_ptr<SqliteDb> db_;
};

// The sequence number in "job-<n>", or NOT_FOUND naming the id.
absl::StatusOr<int64_t> JobSequence(const std::string& job_id);

}  // namespace qshard
