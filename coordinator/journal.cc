#include "coordinator/journal.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/status.h"

namespace qshard {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  client_request_id TEXT UNIQUE,
  spec BLOB NOT NULL,
  state TEXT NOT NULL,
  layers_done INTEGER NOT NULL DEFAULT 0,
  layers_total INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  report TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE job_history (
  seq INTEGER NOT NULL REFERENCES jobs(seq),
  at_ms INTEGER NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_history_by_job ON job_history(seq);
PRAGMA user_version = 1;
)sql";

constexpr char kColumns[] =
    "SELECT seq, client_request_id, spec, state, layers_done, layers_total, error, report, created_ms, updated_ms "
    "FROM jobs ";

constexpr char kJobPrefix[] = "job-";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string JobId(int64_t seq) { return absl::StrCat(kJobPrefix, seq); }

absl::StatusOr<JobRecord> ReadRecord(const SqliteStatement& row) {
  JobRecord job;
  job.seq = row.Int(0);
  job.job_id = JobId(job.seq);
  job.client_request_id = row.Text(1);
  job.spec = row.Text(2);
  QSHARD_ASSIGN_OR_RETURN(job.state, ParseJobState(row.Text(3)));
  job.layers_done = static_cast<int>(row.Int(4));
  job.layers_total = static_cast<int>(row.Int(5));
  job.error = row.Text(6);
  job.report_json = row.Text(7);
  job.created_ms = row.Int(8);
  job.updated_ms = row.Int(9);
  return job;
}

std::string StoredStateName(JobState state) {
  return state == v1::JOB_STATE_UNSPECIFIED ? std::string() : JobStateName(state);
}

}  // namespace

absl::StatusOr<int64_t> JobSequence(const std::string& job_id) {
  absl::string_view digits = job_id;
  int64_t seq = 0;
  if (!absl::ConsumePrefix(&digits, kJobPrefix) || !absl::SimpleAtoi(digits, &seq) || seq <= 0)
    return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
  return seq;
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& state_dir, const std::string& vfs) {
  const std::string path = (std::filesystem::path(state_dir) / kFileName).string();
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path, vfs));
  // WAL: readers never block the writer; FULL: a committed change survives power loss too.
  QSHARD_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                                  "set WAL mode"));
  std::unique_ptr<Journal> journal(new Journal(std::move(db)));
  QSHARD_RETURN_IF_ERROR(journal->Migrate());
  return journal;
}

absl::Status Journal::Migrate() {
  QSHARD_ASSIGN_OR_RETURN(auto version_query, db_->Prepare("PRAGMA user_version", "read the schema version"));
  QSHARD_RETURN_IF_ERROR(version_query->Step().status());
  const int64_t version = version_query->Int(0);
  if (version == kSchemaVersion) return absl::OkStatus();
  if (version > kSchemaVersion)
    return absl::FailedPreconditionError(absl::StrCat("journal ", db_->path(), ": schema version ", version,
                                                      " is newer than this qshard's ", kSchemaVersion));
  QSHARD_ASSIGN_OR_RETURN(auto transaction, SqliteTransaction::Begin(*db_));
  QSHARD_RETURN_IF_ERROR(db_->Exec(kSchema, "create the schema"));
  return transaction->Commit();
}

absl::Status Journal::AddHistory(int64_t seq, JobState from, JobState to, const std::string& note, int64_t at_ms) {
  QSHARD_ASSIGN_OR_RETURN(auto insert,
                          db_->Prepare("INSERT INTO job_history (seq, at_ms, from_state, to_state, note) "
                                       "VALUES (?, ?, ?, ?, ?)",
                                       "record a state change"));
  insert->Bind(1, seq).Bind(2, at_ms).Bind(3, StoredStateName(from)).Bind(4, StoredStateName(to)).Bind(5, note);
  return insert->Run();
}

absl::StatusOr<Journal::Submitted> Journal::Submit(const std::string& client_request_id, const std::string& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(auto transaction, SqliteTransaction::Begin(*db_));
  QSHARD_ASSIGN_OR_RETURN(std::optional<JobRecord> seen, FindByRequestIdLocked(client_request_id));
  if (seen) return Submitted{*std::move(seen), false};
  const int64_t now = NowMs();
  QSHARD_ASSIGN_OR_RETURN(auto insert,
                          db_->Prepare("INSERT INTO jobs (client_request_id, spec, state, created_ms, updated_ms) "
                                       "VALUES (?, ?, ?, ?, ?)",
                                       "insert a job"));
  insert->Bind(1, client_request_id, /*null_if_empty=*/true)
      .BindBlob(2, spec)
      .Bind(3, JobStateName(v1::JOB_STATE_QUEUED))
      .Bind(4, now)
      .Bind(5, now);
  QSHARD_RETURN_IF_ERROR(insert->Run());
  const int64_t seq = db_->LastInsertRowId();
  QSHARD_RETURN_IF_ERROR(AddHistory(seq, v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED, "submitted", now));
  QSHARD_ASSIGN_OR_RETURN(JobRecord job, GetLocked(JobId(seq)));
  QSHARD_RETURN_IF_ERROR(transaction->Commit());
  return Submitted{std::move(job), true};
}

absl::StatusOr<std::optional<JobRecord>> Journal::FindByRequestId(const std::string& client_request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return FindByRequestIdLocked(client_request_id);
}

absl::StatusOr<std::optional<JobRecord>> Journal::FindByRequestIdLocked(const std::string& client_request_id) {
  if (client_request_id.empty()) return std::nullopt;
  QSHARD_ASSIGN_OR_RETURN(auto find, db_->Prepare(absl::StrCat(kColumns, "WHERE client_request_id = ?"),
                                                  "find a request id"));
  find->Bind(1, client_request_id);
  QSHARD_ASSIGN_OR_RETURN(const bool seen, find->Step());
  if (!seen) return std::nullopt;
  return ReadRecord(*find);
}

absl::StatusOr<JobRecord> Journal::GetLocked(const std::string& job_id) {
  QSHARD_ASSIGN_OR_RETURN(const int64_t seq, JobSequence(job_id));
  QSHARD_ASSIGN_OR_RETURN(auto find, db_->Prepare(absl::StrCat(kColumns, "WHERE seq = ?"), "read a job"));
  find->Bind(1, seq);
  QSHARD_ASSIGN_OR_RETURN(const bool found, find->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
  return ReadRecord(*find);
}

absl::StatusOr<JobRecord> Journal::Get(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return GetLocked(job_id);
}

absl::StatusOr<std::vector<JobRecord>> Journal::Query(const std::string& where, int64_t after, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(auto query,
                          db_->Prepare(absl::StrCat(kColumns, where, " AND seq > ? ORDER BY seq LIMIT ?"), "list jobs"));
  query->Bind(1, after).Bind(2, static_cast<int64_t>(limit));
  std::vector<JobRecord> jobs;
  while (true) {
    QSHARD_ASSIGN_OR_RETURN(const bool row, query->Step());
    if (!row) return jobs;
    QSHARD_ASSIGN_OR_RETURN(JobRecord job, ReadRecord(*query));
    jobs.push_back(std::move(job));
  }
}

absl::StatusOr<std::vector<JobRecord>> Journal::List(int64_t after, int limit) {
  return Query("WHERE 1", after, limit);
}

absl::StatusOr<std::vector<JobRecord>> Journal::Unfinished() {
  return Query("WHERE state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')", 0, -1);
}

absl::StatusOr<std::map<JobState, int64_t>> Journal::CountByState() {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(auto query, db_->Prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state", "count jobs"));
  std::map<JobState, int64_t> counts;
  while (true) {
    QSHARD_ASSIGN_OR_RETURN(const bool row, query->Step());
    if (!row) return counts;
    QSHARD_ASSIGN_OR_RETURN(const JobState state, ParseJobState(query->Text(0)));
    counts[state] = query->Int(1);
  }
}

absl::StatusOr<JobRecord> Journal::Transition(const std::string& job_id, const Change& change) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(auto transaction, SqliteTransaction::Begin(*db_));
  QSHARD_ASSIGN_OR_RETURN(const JobRecord before, GetLocked(job_id));
  QSHARD_RETURN_IF_ERROR(CheckTransition(before.state, change.to));
  const int64_t now = NowMs();
  QSHARD_ASSIGN_OR_RETURN(auto update,
                          db_->Prepare("UPDATE jobs SET state = ?, updated_ms = ?, "
                                       "error = CASE WHEN ? = '' THEN error ELSE ? END, "
                                       "report = CASE WHEN ? = '' THEN report ELSE ? END WHERE seq = ?",
                                       "change a job's state"));
  update->Bind(1, JobStateName(change.to)).Bind(2, now);
  update->Bind(3, change.error).Bind(4, change.error).Bind(5, change.report_json).Bind(6, change.report_json);
  update->Bind(7, before.seq);
  QSHARD_RETURN_IF_ERROR(update->Run());
  QSHARD_RETURN_IF_ERROR(AddHistory(before.seq, before.state, change.to, change.note, now));
  QSHARD_ASSIGN_OR_RETURN(JobRecord after, GetLocked(job_id));
  QSHARD_RETURN_IF_ERROR(transaction->Commit());
  return after;
}

absl::Status Journal::SetProgress(const std::string& job_id, int layers_done, int layers_total) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(const int64_t seq, JobSequence(job_id));
  QSHARD_ASSIGN_OR_RETURN(auto update,
                          db_->Prepare("UPDATE jobs SET layers_done = ?, layers_total = ?, updated_ms = ? WHERE seq = ?",
                                       "record progress"));
  update->Bind(1, static_cast<int64_t>(layers_done)).Bind(2, static_cast<int64_t>(layers_total));
  update->Bind(3, NowMs()).Bind(4, seq);
  return update->Run();
}

absl::StatusOr<std::vector<StateChange>> Journal::History(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  QSHARD_ASSIGN_OR_RETURN(const JobRecord job, GetLocked(job_id));
  QSHARD_ASSIGN_OR_RETURN(auto query, db_->Prepare("SELECT from_state, to_state, note, at_ms FROM job_history "
                                                   "WHERE seq = ? ORDER BY rowid",
                                                   "read a job's history"));
  query->Bind(1, job.seq);
  std::vector<StateChange> history;
  while (true) {
    QSHARD_ASSIGN_OR_RETURN(const bool row, query->Step());
    if (!row) return history;
    StateChange change;
    const std::string from = query->Text(0);
    if (!from.empty()) {
      QSHARD_ASSIGN_OR_RETURN(change.from, ParseJobState(from));
    }
    QSHARD_ASSIGN_OR_RETURN(change.to, ParseJobState(query->Text(1)));
    change.note = query->Text(2);
    change.at_ms = query->Int(3);
    history.push_back(std::move(change));
  }
}

}  // namespace qshard
