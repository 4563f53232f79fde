// The SQLite journal: what was committed is there after reopening, a reused request id finds
// its job, transitions follow the table and leave a history, and paging walks every job once.
#include "coordinator/journal.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "sqlite3.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using testing::ScopedTempDir;

TEST(JournalTest, CommittedJobsSurviveReopening) {
  ScopedTempDir dir;
  std::string id;
  {
    auto journal = Journal::Open(dir.path());
    ASSERT_TRUE(journal.ok()) << journal.status();
    auto submitted = (*journal)->Submit("req-1", std::string("spec\0bytes", 10));
    ASSERT_TRUE(submitted.ok()) << submitted.status();
    id = submitted->job.job_id;
    ASSERT_TRUE((*journal)->Transition(id, {v1::JOB_STATE_RUNNING, "started"}).ok());
    ASSERT_TRUE((*journal)->SetProgress(id, 1, 2).ok());
  }
  auto journal = Journal::Open(dir.path());
  ASSERT_TRUE(journal.ok()) << journal.status();
  auto job = (*journal)->Get(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->client_request_id, "req-1");
  EXPECT_EQ(job->spec, std::string("spec\0bytes", 10));
  EXPECT_EQ(job->state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job->layers_done, 1);
  EXPECT_EQ(job->layers_total, 2);
  EXPECT_GT(job->created_ms, 0);
  EXPECT_GE(job->updated_ms, job->created_ms);
  auto unfinished = (*journal)->Unfinished();
  ASSERT_TRUE(unfinished.ok());
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ(unfinished->front().job_id, id);
  // The file is in WAL mode.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((std::filesystem::path(dir.path()) / Journal::kFileName).c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(JournalTest, AReusedRequestIdFindsItsJob) {
  ScopedTempDir dir;
  auto journal = Journal::Open(dir.path()).value();
  auto first = journal->Submit("same", "A").value();
  auto again = journal->Submit("same", "B").value();
  EXPECT_TRUE(first.created);
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.job.job_id, first.job.job_id);
  EXPECT_EQ(again.job.spec, "A");  // the caller compares specs (SubmitJob: ALREADY_EXISTS)
  // Without a request id every submission is a new job.
  EXPECT_NE(journal->Submit("", "A").value().job.job_id, journal->Submit("", "A").value().job.job_id);
}

TEST(JournalTest, TransitionsFollowTheTableAndLeaveAHistory) {
  ScopedTempDir dir;
  auto journal = Journal::Open(dir.path()).value();
  const std::string id = journal->Submit("r", "s").value().job.job_id;
  ASSERT_TRUE(journal->Transition(id, {v1::JOB_STATE_RUNNING, "started"}).ok());
  auto refused = journal->Transition(id, {v1::JOB_STATE_CANCELLED, "skip CANCELLING"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(journal->Transition(id, {v1::JOB_STATE_QUEUED, "coordinator restarted"}).ok());
  ASSERT_TRUE(journal->Transition(id, {v1::JOB_STATE_RUNNING, "started"}).ok());
  auto failed = journal->Transition(id, {v1::JOB_STATE_FAILED, "failed", "--bits (quant.bits): bad"});
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->error, "--bits (quant.bits): bad");
  EXPECT_EQ(journal->Transition(id, {v1::JOB_STATE_RUNNING, ""}).status().code(),
            absl::StatusCode::kFailedPrecondition);

  auto history = journal->History(id);
  ASSERT_TRUE(history.ok()) << history.status();
  const std::vector<std::pair<JobState, JobState>> expected = {
      {v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED}, {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED},     {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED}};
  ASSERT_EQ(history->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*history)[i].from, expected[i].first) << i;
    EXPECT_EQ((*history)[i].to, expected[i].second) << i;
  }
  EXPECT_EQ((*history)[2].note, "coordinator restarted");
  EXPECT_TRUE(journal->Unfinished().value().empty());
}

TEST(JournalTest, UnknownIdsAreNotFoundNamingTheField) {
  ScopedTempDir dir;
  auto journal = Journal::Open(dir.path()).value();
  for (const char* id : {"job-1", "job-x", "7", ""}) {
    auto job = journal->Get(id);
    EXPECT_EQ(job.status().code(), absl::StatusCode::kNotFound) << id;
    EXPECT_NE(job.status().message().find("job_id"), std::string::npos);
  }
}

TEST(JournalTest, PagesWalkEveryJobOnceInOrder) {
  ScopedTempDir dir;
  auto journal = Journal::Open(dir.path()).value();
  for (int i = 0; i < 7; ++i) journal->Submit("", "s").value();
  std::vector<std::string> seen;
  int64_t after = 0;
  while (true) {
    auto page = journal->List(after, 3).value();
    if (page.empty()) break;
    EXPECT_LE(page.size(), 3u);
    for (const JobRecord& job : page) seen.push_back(job.job_id);
    after = page.back().seq;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"job-1", "job-2", "job-3", "job-4", "job-5", "job-6", "job-7"}));
}

TEST(JournalTest, RefusesANewerSchema) {
  ScopedTempDir dir;
  Journal::Open(dir.path()).value();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((std::filesystem::path(dir.path()) / Journal::kFileName).c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto journal = Journal::Open(dir.path());
  EXPECT_EQ(journal.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(journal.status().message().find("schema version 99"), std::string::npos) << journal.status();
}

}  // namespace
}  // namespace qshard
