// Storage faults under the store: a failed write is reported as kUnavailable (outcome unknown), the
// store says it is unhealthy, Resume brings it back (reopening the DB when RocksDB cannot resume), and
// afterwards every acknowledged commit is there and nothing unacknowledged reads as done.
#include <sys/wait.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "testing/fault_fs.h"
#include "tests/support/child_process.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Fault;
using ::idem::testing::FaultFs;
using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

class StoreFailureTest : public ::testing::TestWithParam<std::tuple<Fault, bool>> {
 protected:
  void SetUp() override {
    fs_ = std::make_shared<FaultFs>();
    env_ = testing::EnvOver(fs_);
    options_ = ManualOptions();
    options_.env = env_.get();
    options_.durable_reservations = std::get<1>(GetParam());
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));
  }

  ScratchDir dir_;
  std::shared_ptr<FaultFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  Options options_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreFailureTest, FailedWriteIsUnavailableAndStoreRecoversWithEverythingAcknowledged) {
  std::vector<std::string> acknowledged;
  for (int i = 0; i < 50; ++i) {
    const std::string id = "before-" + std::to_string(i);
    absl::StatusOr<Reservation> r = store_->Reserve(id);
    ASSERT_THAT(r, IsOk());
    ASSERT_THAT(store_->Commit(id, r->token, "ok"), IsOk());
    acknowledged.push_back(id);
  }
  const absl::StatusOr<Reservation> held = store_->Reserve("during");
  ASSERT_THAT(held, IsOk());

  fs_->Arm(std::get<0>(GetParam()));
  absl::Status failed = store_->Commit("during", held->token, "lost?");
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(failed.message(), ::testing::HasSubstr("outcome unknown"));
  EXPECT_THAT(store_->Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_GT(fs_->injected(), 0u);
  // Reads keep answering while writes are refused.
  absl::StatusOr<Reservation> dup = store_->Reserve("before-3");
  ASSERT_THAT(dup, IsOk());
  EXPECT_EQ(dup->verdict, Verdict::kDuplicate);
  // While the fault lasts, recovery fails and says so.
  EXPECT_THAT(store_->Resume(), StatusIs(absl::StatusCode::kUnavailable));

  fs_->Clear();
  ASSERT_THAT(store_->Resume(), IsOk());
  EXPECT_THAT(store_->Health(), IsOk());
  for (const std::string& id : acknowledged) {
    absl::StatusOr<Reservation> r = store_->Reserve(id);
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->verdict, Verdict::kDuplicate) << id;
  }
  // The failed commit's outcome was unknown; whatever it was, the store now tells the truth and the
  // holder can finish: either it landed (kDuplicate) or the ID is still its own to commit.
  absl::StatusOr<Reservation> during = store_->Reserve("during");
  ASSERT_THAT(during, IsOk());
  if (during->verdict != Verdict::kDuplicate) {
    EXPECT_THAT(store_->Commit("during", held->token, "retried"), IsOk());
  }
  // And new work proceeds.
  absl::StatusOr<Reservation> fresh = store_->Reserve("after");
  ASSERT_THAT(fresh, IsOk());
  EXPECT_EQ(fresh->verdict, Verdict::kReserved);
  EXPECT_GT(fresh->token, held->token);
  EXPECT_THAT(store_->Commit("after", fresh->token), IsOk());
}

// A Commit whose fsync failed reached the WAL anyway (docs/ROCKSDB.md §4: a failed sync=true write is present
// after reopen). Its retry with the same token, after recovery, must find the landed commit and write
// nothing: not the marker and not the effects a second time. Both reservation modes.
TEST_P(StoreFailureTest, RetriedCommitAfterAnAmbiguousErrorThatLandedWritesNothing) {
  store_.reset();
  options_.sync = true;
  IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("evt"));
  fs_->Arm(std::get<0>(GetParam()), testing::kSync);
  rocksdb::WriteBatch first;
  first.Put(store_->db()->DefaultColumnFamily(), "effect-attempt-1", "1");
  ASSERT_THAT(store_->Commit("evt", r.token, "first", &first), StatusIs(absl::StatusCode::kUnavailable));
  fs_->Clear();
  ASSERT_THAT(store_->Resume(), IsOk());
  std::string value;
  if (!store_->db()->Get(rocksdb::ReadOptions(), "effect-attempt-1", &value).ok()) {
    GTEST_SKIP() << "the failed write did not reach the WAL this time; nothing ambiguous to retry";
  }
  rocksdb::WriteBatch retry;
  retry.Put(store_->db()->DefaultColumnFamily(), "effect-attempt-2", "1");
  EXPECT_THAT(store_->Commit("evt", r.token, "retried", &retry), IsOk());
  EXPECT_TRUE(store_->db()->Get(rocksdb::ReadOptions(), "effect-attempt-2", &value).IsNotFound())
      << "the retry applied the effects a second time";
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation dup, store_->Reserve("evt"));
  EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
  EXPECT_EQ(dup.result, "first");
}

// A failed read must never read as "absent": that would admit a duplicate as new.
TEST_P(StoreFailureTest, FailedReadIsAnErrorNeverANewEvent) {
  for (int i = 0; i < 300; ++i) {
    const std::string id = "stored-" + std::to_string(i);
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve(id));
    ASSERT_THAT(store_->Commit(id, r.token, "ok"), IsOk());
  }
  ASSERT_THAT(store_->CompactExpired(), IsOk());  // to SST files
  store_.reset();                                 // a cold block cache: the next reads go to the files
  options_.recent_commits_cache_entries = 0;
  IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));

  fs_->Arm(std::get<0>(GetParam()), testing::kRead);
  int errors = 0;
  for (int i = 0; i < 300; i += 7) {
    absl::StatusOr<Reservation> r = store_->Reserve("stored-" + std::to_string(i));
    if (r.ok()) {
      EXPECT_EQ(r->verdict, Verdict::kDuplicate) << i;  // answered from a cached block: still the truth
    } else {
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable)) << i;
      ++errors;
    }
  }
  std::vector<std::string_view> batch = {"stored-1", "stored-2", "stored-3"};
  for (const auto& r : store_->ReserveBatch(batch)) {
    if (r.ok()) {
      EXPECT_EQ(r->verdict, Verdict::kDuplicate);
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(fs_->injected(), 0u);

  fs_->Clear();
  for (int i = 0; i < 300; i += 7) {
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("stored-" + std::to_string(i)));
    EXPECT_EQ(r.verdict, Verdict::kDuplicate) << i;
  }
}

// Opening fails clearly while files cannot be opened, creates nothing half-way, and works afterwards.
TEST_P(StoreFailureTest, FailedOpenIsAClearErrorAndRetryable) {
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("kept"));
  ASSERT_THAT(store_->Commit("kept", r.token, "ok"), IsOk());
  store_.reset();
  fs_->Arm(std::get<0>(GetParam()), testing::kOpen);
  absl::StatusOr<std::unique_ptr<Store>> failed = Store::Open(options_, dir_.Sub("db"));
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().code(), ::testing::AnyOf(absl::StatusCode::kUnavailable, absl::StatusCode::kDataLoss,
                                                       absl::StatusCode::kInternal));
  EXPECT_FALSE(failed.status().message().empty());
  fs_->Clear();
  IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation again, store_->Reserve("kept"));
  EXPECT_EQ(again.verdict, Verdict::kDuplicate);
}

// Faults at random points (one append, sync or open in 25) under a stream of reserves and commits, with
// Resume after each failure, in a child process (tests/reliability/fault_worker.cc): every acknowledged commit
// survives, and nothing that was never committed reads done. Debian's RocksDB keeps its assertions and one
// of them can abort the process after some fault sequences (seen under ASan timing); an abort is a crash,
// and the same must then hold after reopening.
TEST_P(StoreFailureTest, RandomFaultsLoseNothingAcknowledged) {
  store_.reset();
  const std::string path = dir_.Sub("random");
  testing::Child child({IDEM_FAULT_WORKER, path, std::get<0>(GetParam()) == Fault::kIoError ? "io" : "nospace",
                        std::get<1>(GetParam()) ? "1" : "0", "25", "17", "1500"});
  ASSERT_TRUE(child.running());
  // Debian's RocksDB 7.8.3 can hang the worker: a Resume that reopens closes the DB while RocksDB's own
  // no-space recovery is under way, and DB::Close waits forever for a recovery no thread runs any more
  // (seen about once in 20 loaded runs; backtrace in DBImpl::CloseHelper). Such a worker is killed and
  // checked as a crash: what a crash must keep is what it kept.
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  bool hung = false;
  while (child.ReadFor(absl::Milliseconds(50))) {
    if (absl::Now() > give_up) {
      hung = true;
      break;
    }
  }
  const int status = hung ? child.Kill() : child.Wait();
  const bool aborted = hung || (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  ASSERT_TRUE((WIFEXITED(status) && WEXITSTATUS(status) == 0) || aborted) << "worker failed: " << status;
  std::vector<std::string> acknowledged, never_committed;
  std::istringstream lines(child.output());
  std::string kind, id, summary;
  while (lines >> kind) {
    if (kind == "done") {
      std::getline(lines, summary);
    } else if (lines >> id) {
      (kind == "C" ? acknowledged : never_committed).push_back(id);
    }
  }
  Options options = options_;
  options.env = nullptr;
  IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options, path));
  for (const std::string& acked : acknowledged) {
    IDEM_ASSERT_OK_AND_ASSIGN(RecordInfo info, store_->Peek(acked));
    EXPECT_EQ(info.state, RecordInfo::State::kDone) << acked;
  }
  for (const std::string& never : never_committed) {
    absl::StatusOr<RecordInfo> info = store_->Peek(never);
    EXPECT_TRUE(!info.ok() || info->state != RecordInfo::State::kDone) << never;
  }
  EXPECT_GT(acknowledged.size(), aborted ? 0u : 800u);
  std::printf("[ figures  ] %s; %zu acknowledged commits all present, %zu never-committed IDs none done%s\n",
              hung      ? "worker hung in RocksDB's Close and was killed"
              : aborted ? "worker aborted by a RocksDB assertion"
                        : ("faults injected, failed calls:" + summary).c_str(),
              acknowledged.size(), never_committed.size(), aborted ? " (after the crash)" : "");
}

INSTANTIATE_TEST_SUITE_P(Faults, StoreFailureTest,
                         ::testing::Combine(::testing::Values(Fault::kIoError, Fault::kNoSpace), ::testing::Bool()));

}  // namespace
}  // namespace idem
