// The journal under storage faults (through tests/coordinator/fault_vfs.h): a failed write, a
// full disk and failed fsyncs fail the change being made, name the journal, and leave the
// last committed state readable and the journal usable; a process that dies at any write of
// a submission and its transitions leaves, on reopening, exactly a committed prefix of them.
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "coordinator/journal.h"
#include "gtest/gtest.h"
#include "tests/coordinator/fault_vfs.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using testing::FaultVfs;
using testing::ScopedTempDir;

class JournalFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vfs_ = FaultVfs::Register();
    ASSERT_NE(vfs_, nullptr);
    FaultVfs::Reset();
  }
  void TearDown() override { FaultVfs::Reset(); }

  std::unique_ptr<Journal> OpenJournal() {
    auto journal = Journal::Open(dir_.path(), vfs_);
    EXPECT_TRUE(journal.ok()) << journal.status();
    return journal.ok() ? *std::move(journal) : nullptr;
  }

  // The committed job, RUNNING, that every fault must leave alone.
  std::string CommitRunningJob(Journal& journal) {
    auto submitted = journal.Submit("before", "spec-before");
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    EXPECT_TRUE(journal.Transition(submitted->job.job_id, {v1::JOB_STATE_RUNNING, "started"}).ok());
    return submitted->job.job_id;
  }

  // After the fault is gone: the committed job is as it was, the failed submission left no
  // job, and the journal takes changes again.
  void ExpectIntactAndUsable(Journal& journal, const std::string& committed) {
    auto job = journal.Get(committed);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state, v1::JOB_STATE_RUNNING);
    auto history = journal.History(committed);
    ASSERT_TRUE(history.ok());
    EXPECT_EQ(history->size(), 2u);
    auto again = journal.Submit("after", "spec-after");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(journal.Transition(committed, {v1::JOB_STATE_SUCCEEDED, "done"}).ok());
  }

  ScopedTempDir dir_;
  const char* vfs_ = nullptr;
};

TEST_F(JournalFaultsTest, AFailedWriteFailsTheChangeAndLosesNothing) {
  std::unique_ptr<Journal> journal = OpenJournal();
  ASSERT_NE(journal, nullptr);
  const std::string committed = CommitRunningJob(*journal);
  FaultVfs::FailWritesAfter(0, SQLITE_IOERR_WRITE);
  const auto failed = journal->Submit("lost", "spec-lost");
  EXPECT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("journal.sqlite"), std::string::npos) << failed.status();
  EXPECT_FALSE(journal->Transition(committed, {v1::JOB_STATE_SUCCEEDED, "done"}).ok());
  FaultVfs::Reset();
  journal.reset();
  journal = OpenJournal();
  ASSERT_NE(journal, nullptr);
  auto lost = journal->FindByRequestId("lost");
  ASSERT_TRUE(lost.ok());
  EXPECT_FALSE(lost->has_value()) << "a submission whose write failed was kept";
  ExpectIntactAndUsable(*journal, committed);
}

TEST_F(JournalFaultsTest, AFullDiskFailsTheChangeAndTheSameJournalGoesOn) {
  std::unique_ptr<Journal> journal = OpenJournal();
  ASSERT_NE(journal, nullptr);
  const std::string committed = CommitRunningJob(*journal);
  FaultVfs::FailWritesAfter(1, SQLITE_FULL);  // the second page of the next change fails
  const auto failed = journal->Submit("lost", std::string(64 << 10, 'x'));  // several pages
  EXPECT_FALSE(failed.ok());
  FaultVfs::Reset();
  auto lost = journal->FindByRequestId("lost");
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_FALSE(lost->has_value());
  ExpectIntactAndUsable(*journal, committed);  // without reopening
}

TEST_F(JournalFaultsTest, FailedFsyncsAreNeverAcknowledged) {
  std::unique_ptr<Journal> journal = OpenJournal();
  ASSERT_NE(journal, nullptr);
  const std::string committed = CommitRunningJob(*journal);
  FaultVfs::FailSyncs();
  EXPECT_FALSE(journal->Submit("unsynced", "spec").ok());  // synchronous=FULL: the commit syncs
  FaultVfs::Reset();
  journal.reset();
  journal = OpenJournal();
  ASSERT_NE(journal, nullptr);
  ExpectIntactAndUsable(*journal, committed);
}

// A child process opens the journal, submits a job and moves it through RUNNING to
// SUCCEEDED, and dies at its Nth write. Whatever N, the journal opens afterwards and holds a
// committed prefix: no job, or the job with a state its history agrees with.
TEST_F(JournalFaultsTest, ACrashAtAnyWriteLeavesACommittedPrefix) {
  FaultVfs::Reset();
  int total_writes = 0;
  {  // How many writes the whole sequence takes, in a directory of its own.
    ScopedTempDir counting;
    auto journal = Journal::Open(counting.path(), vfs_);
    ASSERT_TRUE(journal.ok()) << journal.status();
    auto job = (*journal)->Submit("r", "spec");
    ASSERT_TRUE(job.ok());
    ASSERT_TRUE((*journal)->Transition(job->job.job_id, {v1::JOB_STATE_RUNNING, "started"}).ok());
    ASSERT_TRUE((*journal)->Transition(job->job.job_id, {v1::JOB_STATE_SUCCEEDED, "done"}).ok());
    total_writes = FaultVfs::writes();
  }
  ASSERT_GT(total_writes, 3);
  std::set<size_t> prefixes;  // committed changes seen after a crash: 0 (no job) to 3
  for (int n = 1; n <= total_writes; ++n) {
    ScopedTempDir crash_dir;
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      FaultVfs::Reset();
      FaultVfs::ExitAtWrite(n);
      auto journal = Journal::Open(crash_dir.path(), vfs_);
      if (!journal.ok()) _exit(2);
      auto job = (*journal)->Submit("r", "spec");
      if (!job.ok()) _exit(2);
      if (!(*journal)->Transition(job->job.job_id, {v1::JOB_STATE_RUNNING, "started"}).ok()) _exit(2);
      if (!(*journal)->Transition(job->job.job_id, {v1::JOB_STATE_SUCCEEDED, "done"}).ok()) _exit(2);
      _exit(1);  // never crashed: n was past the last write
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "write " << n << ": exit " << status;

    auto journal = Journal::Open(crash_dir.path());
    ASSERT_TRUE(journal.ok()) << "after a crash at write " << n << ": " << journal.status();
    auto jobs = (*journal)->List(0, 10);
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    ASSERT_LE(jobs->size(), 1u);
    if (jobs->empty()) {
      prefixes.insert(0);
      continue;
    }
    const JobRecord& job = jobs->front();
    auto history = (*journal)->History(job.job_id);
    ASSERT_TRUE(history.ok());
    ASSERT_FALSE(history->empty());
    EXPECT_EQ(history->back().to, job.state) << "write " << n;
    const std::vector<JobState> order = {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED};
    ASSERT_LE(history->size(), order.size());
    for (size_t i = 0; i < history->size(); ++i) EXPECT_EQ((*history)[i].to, order[i]) << "write " << n;
    prefixes.insert(history->size());
  }
  // The crash points fell before, between and inside every change.
  EXPECT_EQ(prefixes, (std::set<size_t>{0, 1, 2})) << "crashes did not land between every pair of changes";
}

}  // namespace
}  // namespace qshard
