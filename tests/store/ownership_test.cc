// What a partition store needs when its owner changes: the ownership floor that fences an earlier
// owner's tokens, the allow-list of the column families its effects may write, and the commit hook that
// feeds its changelog (in WAL order, replayable into an empty DB).
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "idem/processor.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/support/db_contents.h"
#include "tests/support/ledger_db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::ColumnFamilyContents;
using ::idem::testing::FakeClock;
using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

using CallerDb = ::idem::testing::LedgerDb;

constexpr uint64_t kOrdinalShift = 40;

TEST(OwnershipFloorTest, TokensStartAboveTheFloorAndTheMarkIsPersistedOnce) {
  ScratchDir dir;
  auto clock = std::make_shared<FakeClock>();
  Options options = ManualOptions(clock);
  const uint64_t floor = (uint64_t{3} << kOrdinalShift) + 12345;  // not a multiple of the mark's block
  options.token_floor = floor;
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    EXPECT_EQ(store->TokenFloor(), floor + 1);
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("a"));
    EXPECT_EQ(r.token, floor + 1);
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r2, store->Reserve("b"));
    EXPECT_EQ(r2.token, floor + 2);
  }
  // Reopened without a floor: the tokens continue above the persisted mark, which covers the floor's
  // tokens by one block (not one block per 2^16 tokens skipped).
  options.token_floor = 0;
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  EXPECT_GT(store->TokenFloor(), floor + 2);
  EXPECT_LE(store->TokenFloor(), floor + (uint64_t{1} << 16) + 1);
}

TEST(OwnershipFloorTest, FloorAtTheLastTokenIsRefused) {
  ScratchDir dir;
  Options options = ManualOptions(std::make_shared<FakeClock>());
  options.token_floor = UINT64_MAX;
  EXPECT_THAT(Store::Open(options, dir.Sub("db")), StatusIs(absl::StatusCode::kInvalidArgument));
}

// An owner's tokens stay below its successor's floor: past its limit Reserve refuses, nothing reserved.
TEST(OwnershipFloorTest, TokensStayBelowTheLimit) {
  ScratchDir dir;
  Options options = ManualOptions(std::make_shared<FakeClock>());
  options.token_floor = uint64_t{3} << kOrdinalShift;
  options.token_limit = options.token_floor + 3;  // room for two tokens
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation a, store->Reserve("a"));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation b, store->Reserve("b"));
  EXPECT_EQ(b.token, options.token_limit - 1);
  EXPECT_THAT(store->Reserve("c"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store->Commit("a", a.token), IsOk());
  EXPECT_THAT(store->Peek("c"), StatusIs(absl::StatusCode::kNotFound));
  store.reset();
  // Reopened under the same limit, nothing is left to issue; a limit at the floor is refused outright.
  IDEM_ASSERT_OK_AND_ASSIGN(store, Store::Open(options, dir.Sub("db")));
  EXPECT_THAT(store->Reserve("d"), StatusIs(absl::StatusCode::kFailedPrecondition));
  store.reset();
  options.token_limit = options.token_floor + 1;
  EXPECT_THAT(Store::Open(options, dir.Sub("db")), StatusIs(absl::StatusCode::kInvalidArgument));
}

// A partition moves: the new owner opens its copy of the data with a floor above every token the old
// owner can have issued. The old owner's tokens are fenced whatever the copy holds for the ID.
TEST(OwnershipFloorTest, NewOwnerFencesEveryTokenOfTheOldOne) {
  ScratchDir dir;
  auto clock = std::make_shared<FakeClock>();
  Options options = ManualOptions(clock);
  options.durable_reservations = true;
  options.token_floor = uint64_t{1} << kOrdinalShift;
  uint64_t held = 0, committed = 0;
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto old_owner, Store::Open(options, dir.Sub("db")));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, old_owner->Reserve("held"));
    held = r.token;
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation c, old_owner->Reserve("done"));
    committed = c.token;
    ASSERT_THAT(old_owner->Commit("done", committed, "r1"), IsOk());
  }
  options.token_floor = uint64_t{2} << kOrdinalShift;
  IDEM_ASSERT_OK_AND_ASSIGN(auto owner, Store::Open(options, dir.Sub("db")));
  EXPECT_EQ(owner->TokenFloor(), options.token_floor + 1);

  // The zombie's calls: every one refused, nothing written.
  EXPECT_THAT(owner->Commit("held", held, "zombie"), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(owner->Extend("held", held), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(owner->Release("held", held), StatusIs(absl::StatusCode::kAborted));
  // Even the repeat of a commit that landed: the token does not make the zombie the ID's holder.
  EXPECT_THAT(owner->Commit("done", committed, "r1"), StatusIs(absl::StatusCode::kAborted));
  const Stats stats = owner->GetStats();
  EXPECT_EQ(stats.fenced, 4u);
  EXPECT_EQ(stats.lease_lost, 4u);
  EXPECT_THAT(stats.ToPrometheus(), ::testing::HasSubstr("idem_fenced_total 4"));

  // The old owner's reservation is taken over at once; its commit stands.
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation again, owner->Reserve("held"));
  EXPECT_EQ(again.verdict, Verdict::kReserved);
  EXPECT_TRUE(again.takeover);
  EXPECT_TRUE(again.holder_gone);
  EXPECT_EQ(again.previous_token, held);
  EXPECT_GT(again.token, options.token_floor);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation dup, owner->Reserve("done"));
  EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
  EXPECT_EQ(dup.result, "r1");
  EXPECT_THAT(owner->Commit("held", again.token, "mine"), IsOk());
}

// Within one process: a worker that kept a token of the partition's previous Store (closed at revoke)
// commits into the Store of the next assignment.
TEST(OwnershipFloorTest, StaleWorkerOfAnEarlierAttachmentIsFenced) {
  ScratchDir dir;
  auto clock = std::make_shared<FakeClock>();
  Options options = ManualOptions(clock);
  CallerDb caller(dir.Sub("db"), ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(caller.status.ok()) << caller.status.ToString();
  uint64_t stale = 0;
  {
    options.token_floor = uint64_t{4} << kOrdinalShift;
    IDEM_ASSERT_OK_AND_ASSIGN(auto first, Store::Attach(caller.db.get(), caller.idem(), options));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, first->Reserve("evt"));
    stale = r.token;
    ASSERT_THAT(first->Close(), IsOk());
  }
  options.token_floor = uint64_t{5} << kOrdinalShift;
  IDEM_ASSERT_OK_AND_ASSIGN(auto second, Store::Attach(caller.db.get(), caller.idem(), options));
  rocksdb::WriteBatch effects;
  effects.Put(caller.ledger(), "account", "+1");
  EXPECT_THAT(second->Commit("evt", stale, "", &effects), StatusIs(absl::StatusCode::kAborted));
  std::string value;
  EXPECT_TRUE(caller.db->Get(rocksdb::ReadOptions(), caller.ledger(), "account", &value).IsNotFound());
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, second->Reserve("evt"));
  EXPECT_EQ(r.verdict, Verdict::kReserved);
  EXPECT_GT(r.token, stale);
}

class AllowListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(caller_.status.ok()) << caller_.status.ToString();
    options_.effect_column_families = std::vector<uint32_t>{caller_.ledger()->GetID()};
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Attach(caller_.db.get(), caller_.idem(), options_));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("evt"));
    token_ = r.token;
  }

  // The refused commit wrote nothing: the ledger is empty and the reservation still holds.
  void ExpectNothingWritten() {
    EXPECT_TRUE(ColumnFamilyContents(caller_.db.get(), caller_.ledger()).empty());
    EXPECT_TRUE(ColumnFamilyContents(caller_.db.get(), caller_.db->DefaultColumnFamily()).size() ==
                1);  // metadata only
    IDEM_ASSERT_OK_AND_ASSIGN(RecordInfo info, store_->Peek("evt"));
    EXPECT_EQ(info.state, RecordInfo::State::kReserved);  // no done marker
    EXPECT_EQ(store_->Reserve("evt")->verdict, Verdict::kInFlight);
  }

  ScratchDir dir_;
  Options options_ = ManualOptions(std::make_shared<FakeClock>());
  CallerDb caller_{dir_.Sub("db"), ColumnFamilyOptionsFor(options_)};
  std::unique_ptr<Store> store_;
  uint64_t token_ = 0;
};

TEST_F(AllowListTest, PutsAndDeletesToAllowedFamiliesCommit) {
  rocksdb::WriteBatch effects;
  effects.Put(caller_.ledger(), "a", "1");
  effects.Delete(caller_.ledger(), "b");
  effects.SingleDelete(caller_.ledger(), "c");
  ASSERT_THAT(store_->Commit("evt", token_, "ok", &effects), IsOk());
  EXPECT_EQ(ColumnFamilyContents(caller_.db.get(), caller_.ledger()), (std::map<std::string, std::string>{{"a", "1"}}));
}

TEST_F(AllowListTest, WritesOutsideTheListAreRefusedWithNothingWritten) {
  rocksdb::WriteBatch effects;
  effects.Put(caller_.ledger(), "a", "1");
  effects.Put(caller_.db->DefaultColumnFamily(), "elsewhere", "x");
  absl::Status s = store_->Commit("evt", token_, "", &effects);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("outside the allowed"));
  ExpectNothingWritten();
}

TEST_F(AllowListTest, MergeRangeDeleteAndLogDataAreRefused) {
  {
    rocksdb::WriteBatch effects;
    effects.Merge(caller_.ledger(), "a", "1");
    EXPECT_THAT(store_->Commit("evt", token_, "", &effects), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {
    rocksdb::WriteBatch effects;
    effects.DeleteRange(caller_.ledger(), "a", "z");
    EXPECT_THAT(store_->Commit("evt", token_, "", &effects), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {
    rocksdb::WriteBatch effects;  // LogData alone: a batch that counts no operation
    effects.PutLogData("note");
    EXPECT_THAT(store_->Commit("evt", token_, "", &effects), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {
    rocksdb::WriteBatch effects;
    effects.Put(caller_.ledger(), "a", "1");
    effects.PutLogData("note");
    EXPECT_THAT(store_->Commit("evt", token_, "", &effects), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(store_->CommitBatch({CommitRequest{"evt", token_, "", &effects}})[0],
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  ExpectNothingWritten();
  rocksdb::WriteBatch fine;
  fine.Put(caller_.ledger(), "a", "1");
  EXPECT_THAT(store_->Commit("evt", token_, "", &fine), IsOk());
}

TEST(AllowListOptionTest, ListingTheRecordsFamilyIsRefused) {
  ScratchDir dir;
  Options options = ManualOptions(std::make_shared<FakeClock>());
  CallerDb caller(dir.Sub("db"), ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(caller.status.ok());
  options.effect_column_families = std::vector<uint32_t>{caller.ledger()->GetID(), caller.idem()->GetID()};
  EXPECT_THAT(Store::Attach(caller.db.get(), caller.idem(), options), StatusIs(absl::StatusCode::kInvalidArgument));
}

// A CommitBatch's tag reaches the hook with its write (an owner's input position travels with the
// commit, not beside it); writes without one carry -1. Through the Processor too.
TEST(CommitHookTest, TheTagOfACommitBatchReachesTheHookWithItsWrite) {
  ScratchDir dir;
  Options options = ManualOptions(std::make_shared<FakeClock>());
  std::vector<int64_t> tags;
  options.commit_hook = [&](const CommittedWrite& w) { tags.push_back(w.tag); };
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation a, store->Reserve("a"));
  ASSERT_THAT(store->CommitBatch({CommitRequest{"a", a.token, "", nullptr}}, 41)[0], IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation b, store->Reserve("b"));
  ASSERT_THAT(store->CommitBatch({CommitRequest{"b", b.token, "", nullptr}})[0], IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation c, store->Reserve("c"));
  ASSERT_THAT(store->Commit("c", c.token), IsOk());
  Processor processor(store.get());
  const std::vector<Event> events = {Event("d"), Event("e")};
  const std::vector<HandleResult> results = processor.HandleBatch(
      events, [](const EventContext&) -> absl::StatusOr<std::string> { return std::string("ok"); }, 77);
  ASSERT_EQ(results[0].outcome, Outcome::kApplied);
  ASSERT_EQ(results[1].outcome, Outcome::kApplied);
  EXPECT_EQ(tags, (std::vector<int64_t>{41, -1, -1, 77}));
}

// The hook's batches are the changelog: in WAL order, each with its sequence, and replayed into an
// empty DB they give the same records and effects.
TEST(CommitHookTest, BatchesReplayedIntoAnEmptyDbGiveTheSameRecordsAndEffects) {
  ScratchDir dir;
  auto clock = std::make_shared<FakeClock>();
  Options options = ManualOptions(clock);
  struct Logged {
    uint64_t sequence;
    std::string rep;
  };
  std::mutex mu;
  std::vector<Logged> log;
  options.commit_hook = [&](const CommittedWrite& w) {
    std::lock_guard<std::mutex> lock(mu);
    log.push_back(Logged{w.sequence, w.batch->Data()});
  };
  CallerDb source(dir.Sub("source"), ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(source.status.ok());
  options.effect_column_families = std::vector<uint32_t>{source.ledger()->GetID()};
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Attach(source.db.get(), source.idem(), options));

  constexpr int kThreads = 4, kPerThread = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = "evt-" + std::to_string(t) + "-" + std::to_string(i);
        absl::StatusOr<Reservation> r = store->Reserve(id);
        ASSERT_TRUE(r.ok() && r->verdict == Verdict::kReserved);
        rocksdb::WriteBatch effects;
        effects.Put(source.ledger(), "acct-" + std::to_string(i % 17), id);
        if (i % 3 == 0) effects.Delete(source.ledger(), "acct-" + std::to_string((i + 5) % 17));
        if (i % 10 == 0) {
          ASSERT_TRUE(store->CommitBatch({CommitRequest{id, r->token, "res", &effects}})[0].ok());
        } else if (i % 10 == 1) {
          ASSERT_TRUE(store->Commit(id, r->token).ok());  // no effects
        } else {
          ASSERT_TRUE(store->Commit(id, r->token, "res-" + id, &effects).ok());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_THAT(store->Forget("evt-0-5"), IsOk());
  // A refused commit and a fenced one are not in the log.
  {
    rocksdb::WriteBatch bad;
    bad.Merge(source.ledger(), "x", "y");
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("refused"));
    EXPECT_FALSE(store->Commit("refused", r.token, "", &bad).ok());
    EXPECT_FALSE(store->Commit("never-reserved", r.token).ok());
  }

  ASSERT_EQ(log.size(), static_cast<size_t>(kThreads * kPerThread + 1));
  for (size_t i = 1; i < log.size(); ++i) ASSERT_LT(log[i - 1].sequence, log[i].sequence) << "at " << i;
  EXPECT_EQ(log.back().sequence, source.db->GetLatestSequenceNumber());  // the Forget, the last write

  // Replay into an empty DB with the same column families, in log order, under a store attached first
  // (a new owner's store: its metadata says how its records are keyed, its floor is above the log's
  // tokens).
  CallerDb replica(dir.Sub("replica"), ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(replica.status.ok());
  ASSERT_EQ(replica.ledger()->GetID(), source.ledger()->GetID());
  ASSERT_EQ(replica.idem()->GetID(), source.idem()->GetID());
  Options replica_options = options;
  replica_options.commit_hook = nullptr;
  replica_options.token_floor = uint64_t{1} << kOrdinalShift;
  IDEM_ASSERT_OK_AND_ASSIGN(auto restored, Store::Attach(replica.db.get(), replica.idem(), replica_options));
  for (const Logged& entry : log) {
    rocksdb::WriteBatch batch(entry.rep);
    ASSERT_TRUE(replica.db->Write(rocksdb::WriteOptions(), &batch).ok());
  }
  EXPECT_EQ(ColumnFamilyContents(replica.db.get(), replica.ledger()),
            ColumnFamilyContents(source.db.get(), source.ledger()));
  const auto records = ColumnFamilyContents(source.db.get(), source.idem());
  EXPECT_EQ(records.size(), static_cast<size_t>(kThreads * kPerThread - 1));
  EXPECT_EQ(ColumnFamilyContents(replica.db.get(), replica.idem()), records);

  // And the restored store answers as the source does.
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation dup, restored->Reserve("evt-2-7"));
  EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
  EXPECT_EQ(dup.result, "res-evt-2-7");
  EXPECT_EQ(restored->Reserve("evt-0-5")->verdict, Verdict::kReserved);  // forgotten at the source
}

}  // namespace
}  // namespace idem
