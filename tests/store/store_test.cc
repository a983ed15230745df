// The reserve/commit/release/extend state machine, persistence and bad input, on a real RocksDB.
#include "idem/store.h"

#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "rocksdb/db.h"
#include "rocksdb/perf_context.h"
#include "rocksdb/perf_level.h"
#include "rocksdb/write_batch.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::FakeClock;
using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

// Every semantic holds in both reservation modes (durable records, in-memory lease table).
class StoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<FakeClock>();
    options_ = ManualOptions(clock_);
    options_.ttl = absl::Hours(1);
    options_.lease = absl::Seconds(30);
    options_.durable_reservations = GetParam();
    Reopen();
  }

  void Reopen() {
    store_.reset();
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));
  }

  Reservation MustReserve(std::string_view id) {
    absl::StatusOr<Reservation> r = store_->Reserve(id);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : Reservation{};
  }

  ScratchDir dir_;
  std::shared_ptr<FakeClock> clock_;
  Options options_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, NewIdIsReservedWithFreshTokenAndLease) {
  const Reservation a = MustReserve("event-a");
  EXPECT_EQ(a.verdict, Verdict::kReserved);
  EXPECT_NE(a.token, 0u);
  EXPECT_EQ(a.deadline, clock_->Now() + options_.lease);
  EXPECT_FALSE(a.takeover);
  const Reservation b = MustReserve("event-b");
  EXPECT_EQ(b.verdict, Verdict::kReserved);
  EXPECT_NE(b.token, a.token);
}

// ReserveOptions::lease: this reservation's lease instead of Options::lease (e.g. the caller's own
// remaining time); out of (0, ttl) it is refused with nothing reserved.
TEST_P(StoreTest, PerCallLeaseHoldsForItsOwnLength) {
  ReserveOptions short_lease;
  short_lease.lease = absl::Seconds(5);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("evt", short_lease));
  EXPECT_EQ(r.verdict, Verdict::kReserved);
  EXPECT_EQ(r.deadline, clock_->Now() + absl::Seconds(5));
  clock_->Advance(absl::Seconds(4));
  EXPECT_EQ(MustReserve("evt").verdict, Verdict::kInFlight);
  clock_->Advance(absl::Seconds(2));  // past the 5 s lease, long before Options::lease (30 s)
  const Reservation taken = MustReserve("evt");
  EXPECT_EQ(taken.verdict, Verdict::kReserved);
  EXPECT_TRUE(taken.takeover);
  EXPECT_EQ(taken.deadline, clock_->Now() + options_.lease);
  EXPECT_THAT(store_->Commit("evt", r.token), StatusIs(absl::StatusCode::kAborted));

  for (absl::Duration bad : {absl::ZeroDuration(), absl::Seconds(-1), options_.ttl, options_.ttl * 2}) {
    ReserveOptions o;
    o.lease = bad;
    EXPECT_THAT(store_->Reserve("other", o), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_EQ(MustReserve("other").verdict, Verdict::kReserved) << "a refused call reserved nothing";
}

TEST_P(StoreTest, SecondReserveWhileLeaseLivesIsInFlightWithLeaseEnd) {
  const Reservation first = MustReserve("e");
  clock_->Advance(absl::Seconds(10));
  const Reservation second = MustReserve("e");
  EXPECT_EQ(second.verdict, Verdict::kInFlight);
  EXPECT_EQ(second.deadline, first.deadline);
  EXPECT_EQ(second.token, 0u);
}

TEST_P(StoreTest, CommittedIdIsDuplicateWithResultUntilTtlThenNewAgain) {
  const Reservation r = MustReserve("e");
  ASSERT_THAT(store_->Commit("e", r.token, "the-result"), IsOk());
  const absl::Time committed_at = clock_->Now();
  clock_->Advance(options_.ttl - absl::Seconds(1));
  Reservation dup = MustReserve("e");
  EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
  EXPECT_EQ(dup.result, "the-result");
  EXPECT_EQ(dup.deadline, committed_at + options_.ttl);
  clock_->Advance(absl::Seconds(1));  // exactly at the retention end: expired
  const Reservation again = MustReserve("e");
  EXPECT_EQ(again.verdict, Verdict::kReserved);
  EXPECT_FALSE(again.takeover);
  EXPECT_GT(again.token, r.token);
}

TEST_P(StoreTest, ExpiredLeaseIsTakenOverAndOldHolderIsFenced) {
  const Reservation old_holder = MustReserve("e");
  clock_->Advance(options_.lease);
  const Reservation taker = MustReserve("e");
  EXPECT_EQ(taker.verdict, Verdict::kReserved);
  EXPECT_TRUE(taker.takeover);
  EXPECT_GT(taker.token, old_holder.token);

  EXPECT_THAT(store_->Extend("e", old_holder.token), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(store_->Release("e", old_holder.token), StatusIs(absl::StatusCode::kAborted));

  // The zombie's effects must not be written.
  rocksdb::WriteBatch effects;
  effects.Put(store_->db()->DefaultColumnFamily(), "ledger:e", "zombie");
  EXPECT_THAT(store_->Commit("e", old_holder.token, "zombie", &effects), StatusIs(absl::StatusCode::kAborted));
  std::string value;
  EXPECT_TRUE(store_->db()->Get(rocksdb::ReadOptions(), "ledger:e", &value).IsNotFound());
  EXPECT_EQ(effects.Count(), 1u) << "the caller's batch is returned as it was";

  // The new holder is unaffected.
  ASSERT_THAT(store_->Commit("e", taker.token, "winner"), IsOk());
  EXPECT_EQ(MustReserve("e").result, "winner");
  const Stats stats = store_->GetStats();
  EXPECT_EQ(stats.takeovers, 1u);
  EXPECT_EQ(stats.lease_lost, 3u);
}

TEST_P(StoreTest, CommitWritesEffectsAndMarkerAtomicallyAndRepeatWritesNothing) {
  const Reservation r = MustReserve("e");
  rocksdb::WriteBatch effects;
  effects.Put(store_->db()->DefaultColumnFamily(), "ledger:e", "+10");
  ASSERT_THAT(store_->Commit("e", r.token, "ok", &effects), IsOk());
  std::string value;
  ASSERT_TRUE(store_->db()->Get(rocksdb::ReadOptions(), "ledger:e", &value).ok());
  EXPECT_EQ(value, "+10");

  const rocksdb::SequenceNumber before = store_->db()->GetLatestSequenceNumber();
  rocksdb::WriteBatch again;
  again.Put(store_->db()->DefaultColumnFamily(), "ledger:e", "+10 twice");
  EXPECT_THAT(store_->Commit("e", r.token, "ok", &again), IsOk());
  EXPECT_EQ(store_->db()->GetLatestSequenceNumber(), before) << "a repeated Commit must write nothing";
  ASSERT_TRUE(store_->db()->Get(rocksdb::ReadOptions(), "ledger:e", &value).ok());
  EXPECT_EQ(value, "+10");
  EXPECT_EQ(store_->GetStats().committed, 1u);
}

TEST_P(StoreTest, CommitAfterLeaseEndSucceedsWhileNobodyTookOver) {
  const Reservation r = MustReserve("e");
  clock_->Advance(options_.lease + absl::Seconds(5));
  EXPECT_THAT(store_->Commit("e", r.token), IsOk());
  EXPECT_EQ(MustReserve("e").verdict, Verdict::kDuplicate);
}

TEST_P(StoreTest, ReleaseMakesIdNewAtOnce) {
  const Reservation r = MustReserve("e");
  ASSERT_THAT(store_->Release("e", r.token), IsOk());
  const Reservation again = MustReserve("e");
  EXPECT_EQ(again.verdict, Verdict::kReserved);
  EXPECT_FALSE(again.takeover);
  EXPECT_GT(again.token, r.token);
  EXPECT_THAT(store_->Commit("e", r.token), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(store_->GetStats().released, 1u);
}

TEST_P(StoreTest, ReleaseOrExtendOfCommittedIdIsFailedPrecondition) {
  const Reservation r = MustReserve("e");
  ASSERT_THAT(store_->Commit("e", r.token), IsOk());
  EXPECT_THAT(store_->Release("e", r.token), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->Extend("e", r.token), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(MustReserve("e").verdict, Verdict::kDuplicate);
}

TEST_P(StoreTest, ExtendMovesLeaseEndToNowPlusLease) {
  const Reservation r = MustReserve("e");
  clock_->Advance(absl::Seconds(20));
  ASSERT_THAT(store_->Extend("e", r.token), IsOk());
  const absl::Time extended_end = clock_->Now() + options_.lease;
  clock_->Advance(absl::Seconds(20));  // past the original lease end, within the extended one
  const Reservation other = MustReserve("e");
  EXPECT_EQ(other.verdict, Verdict::kInFlight);
  EXPECT_EQ(other.deadline, extended_end);
  clock_->Advance(absl::Seconds(10));
  EXPECT_TRUE(MustReserve("e").takeover);
}

TEST_P(StoreTest, ReopenKeepsRecordsTokensAndTtl) {
  const Reservation done = MustReserve("done");
  ASSERT_THAT(store_->Commit("done", done.token, "kept"), IsOk());
  const Reservation held = MustReserve("held");
  Reopen();
  Reservation dup = MustReserve("done");
  EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
  EXPECT_EQ(dup.result, "kept");
  if (options_.durable_reservations) {
    // The reservation survived, but its holder did not: taken over at once (the clock has not moved,
    // its lease is still running), and the caller is told so.
    const Reservation again = MustReserve("held");
    EXPECT_EQ(again.verdict, Verdict::kReserved);
    EXPECT_TRUE(again.takeover);
    EXPECT_TRUE(again.holder_gone);
    EXPECT_EQ(again.previous_token, held.token);
    EXPECT_GE(again.token, store_->TokenFloor());
    EXPECT_LT(held.token, store_->TokenFloor());
    EXPECT_THAT(store_->Commit("held", held.token), StatusIs(absl::StatusCode::kAborted));
    ASSERT_THAT(store_->Commit("held", again.token, "after restart"), IsOk());
  } else {
    // In-memory leases die with the process: the ID is new again and the old token holds nothing.
    const Reservation again = MustReserve("held");
    EXPECT_EQ(again.verdict, Verdict::kReserved);
    EXPECT_GT(again.token, held.token);
    EXPECT_THAT(store_->Commit("held", held.token), StatusIs(absl::StatusCode::kAborted));
  }
  const Reservation fresh = MustReserve("fresh");
  EXPECT_GT(fresh.token, held.token) << "tokens never repeat across restarts";
  clock_->Advance(options_.ttl);
  Reopen();
  EXPECT_EQ(MustReserve("done").verdict, Verdict::kReserved) << "TTL still applies after reopen";
}

TEST_P(StoreTest, TokensNeverRepeatAcrossManyRestarts) {
  std::set<uint64_t> seen;
  for (int restart = 0; restart < 5; ++restart) {
    for (int i = 0; i < 20; ++i) {
      const Reservation r = MustReserve("id-" + std::to_string(i));
      if (r.verdict != Verdict::kReserved) continue;
      EXPECT_TRUE(seen.insert(r.token).second) << "token " << r.token << " issued twice";
      ASSERT_THAT(store_->Release("id-" + std::to_string(i), r.token), IsOk());
    }
    Reopen();
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST_P(StoreTest, BadInputGetsClearErrorsAndLosesNothing) {
  const Reservation kept = MustReserve("kept");
  ASSERT_THAT(store_->Commit("kept", kept.token, "r"), IsOk());

  EXPECT_THAT(store_->Reserve(""), StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string too_long(options_.max_id_bytes + 1, 'x');
  EXPECT_THAT(store_->Reserve(too_long), StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string longest(options_.max_id_bytes, 'x');
  EXPECT_EQ(MustReserve(longest).verdict, Verdict::kReserved);

  const Reservation r = MustReserve("e");
  const std::string big_result(options_.max_result_bytes + 1, 'r');
  EXPECT_THAT(store_->Commit("e", r.token, big_result), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(MustReserve("e").verdict, Verdict::kInFlight) << "a refused commit leaves the reservation";
  EXPECT_THAT(store_->Commit("e", 0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->Commit("e", r.token + 1000), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(store_->Commit("never-reserved", r.token), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(store_->Release("never-reserved", 7), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(store_->Commit("e", r.token, std::string(options_.max_result_bytes, 'r')), IsOk());

  // A binary ID with embedded zero bytes is an ordinary ID.
  const std::string binary("\0\xff\0id", 5);
  EXPECT_EQ(MustReserve(binary).verdict, Verdict::kReserved);
  EXPECT_EQ(MustReserve("kept").verdict, Verdict::kDuplicate);
}

TEST_P(StoreTest, CorruptStoredValueIsDataLossAndOtherIdsAreUnaffected) {
  const Reservation good = MustReserve("good");
  ASSERT_THAT(store_->Commit("good", good.token), IsOk());
  ASSERT_TRUE(store_->db()
                  ->Put(rocksdb::WriteOptions(), store_->column_family(), store_->RecordKey("bad"), "garbage!!!!!!!")
                  .ok());
  EXPECT_THAT(store_->Reserve("bad"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store_->Commit("bad", 5), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store_->Peek("bad"), StatusIs(absl::StatusCode::kDataLoss));
  std::vector<std::string_view> ids = {"bad", "good", "new"};
  auto batch = store_->ReserveBatch(ids);
  EXPECT_THAT(batch[0], StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_THAT(batch[1], IsOk());
  EXPECT_EQ(batch[1]->verdict, Verdict::kDuplicate);
  ASSERT_THAT(batch[2], IsOk());
  EXPECT_EQ(batch[2]->verdict, Verdict::kReserved);
  EXPECT_EQ(store_->GetStats().corrupt_records, 3u);
  // The corrupt bytes are still there for `verify` to report; the store did not overwrite them.
  std::string value;
  ASSERT_TRUE(
      store_->db()->Get(rocksdb::ReadOptions(), store_->column_family(), store_->RecordKey("bad"), &value).ok());
  EXPECT_EQ(value, "garbage!!!!!!!");
}

TEST_P(StoreTest, ClosedStoreRefusesCallsWithFailedPrecondition) {
  ASSERT_THAT(store_->Close(), IsOk());
  EXPECT_THAT(store_->Reserve("e"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->Commit("e", 1), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->CompactExpired(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->Close(), IsOk()) << "Close is idempotent";
  // The data survived the close.
  Reopen();
  EXPECT_EQ(MustReserve("e").verdict, Verdict::kReserved);
}

TEST_P(StoreTest, ReserveBatchAnswersEachIdAndRepeatsAreInFlight) {
  const Reservation done = MustReserve("done");
  ASSERT_THAT(store_->Commit("done", done.token, "R"), IsOk());
  MustReserve("held");
  const std::string too_long(options_.max_id_bytes + 1, 'x');
  std::vector<std::string_view> ids = {"a", "done", "held", "a", "", too_long, "b"};
  auto results = store_->ReserveBatch(ids);
  ASSERT_EQ(results.size(), ids.size());
  ASSERT_THAT(results[0], IsOk());
  EXPECT_EQ(results[0]->verdict, Verdict::kReserved);
  ASSERT_THAT(results[1], IsOk());
  EXPECT_EQ(results[1]->verdict, Verdict::kDuplicate);
  EXPECT_EQ(results[1]->result, "R");
  ASSERT_THAT(results[2], IsOk());
  EXPECT_EQ(results[2]->verdict, Verdict::kInFlight);
  ASSERT_THAT(results[3], IsOk());
  EXPECT_EQ(results[3]->verdict, Verdict::kInFlight);
  EXPECT_EQ(results[3]->deadline, results[0]->deadline);
  EXPECT_THAT(results[4], StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(results[5], StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(results[6], IsOk());
  EXPECT_EQ(results[6]->verdict, Verdict::kReserved);
  EXPECT_NE(results[6]->token, results[0]->token);
  // The batch's reservations are real.
  EXPECT_THAT(store_->Commit("a", results[0]->token), IsOk());
  EXPECT_EQ(MustReserve("b").verdict, Verdict::kInFlight);
}

TEST_P(StoreTest, ReserveBatchWithFingerprintsConflictsAsReserveWould) {
  ReserveOptions with_one;
  with_one.fingerprint = 1;
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation done, store_->Reserve("done", with_one));
  ASSERT_THAT(store_->Commit("done", done.token, "R"), IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation held, store_->Reserve("held", with_one));
  (void)held;
  std::vector<std::string_view> ids = {"done", "done2", "held", "new", "new", "new", "free"};
  std::vector<std::optional<uint64_t>> fingerprints = {2, std::nullopt, 2, 5, 5, 6, std::nullopt};
  auto results = store_->ReserveBatch(ids, fingerprints);
  ASSERT_EQ(results.size(), ids.size());
  ASSERT_THAT(results[0], IsOk());
  EXPECT_EQ(results[0]->verdict, Verdict::kConflict) << "stored with another fingerprint";
  EXPECT_EQ(results[0]->result, "R");
  ASSERT_THAT(results[1], IsOk());
  EXPECT_EQ(results[1]->verdict, Verdict::kReserved);
  ASSERT_THAT(results[2], IsOk());
  EXPECT_EQ(results[2]->verdict, Verdict::kConflict) << "held with another fingerprint";
  ASSERT_THAT(results[3], IsOk());
  EXPECT_EQ(results[3]->verdict, Verdict::kReserved);
  ASSERT_THAT(results[4], IsOk());
  EXPECT_EQ(results[4]->verdict, Verdict::kInFlight) << "a repeat with the same payload";
  ASSERT_THAT(results[5], IsOk());
  EXPECT_EQ(results[5]->verdict, Verdict::kConflict) << "a repeat with another payload";
  ASSERT_THAT(results[6], IsOk());
  EXPECT_EQ(results[6]->verdict, Verdict::kReserved);
  // The fingerprint is kept with the reservation: a later Reserve with another one conflicts.
  ReserveOptions other;
  other.fingerprint = 9;
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation again, store_->Reserve("new", other));
  EXPECT_EQ(again.verdict, Verdict::kConflict);
  EXPECT_EQ(store_->GetStats().conflicts, 4u);
  // Fingerprints that are neither none nor one per ID are refused, every element.
  std::vector<std::optional<uint64_t>> short_list = {1};
  for (const auto& r : store_->ReserveBatch(ids, short_list)) {
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST_P(StoreTest, PeekShowsRecordWithoutChangingIt) {
  EXPECT_THAT(store_->Peek("e"), StatusIs(absl::StatusCode::kNotFound));
  const Reservation r = MustReserve("e");
  IDEM_ASSERT_OK_AND_ASSIGN(RecordInfo info, store_->Peek("e"));
  EXPECT_EQ(info.state, RecordInfo::State::kReserved);
  EXPECT_EQ(info.token, r.token);
  EXPECT_FALSE(info.expired);
  clock_->Advance(options_.lease);
  IDEM_ASSERT_OK_AND_ASSIGN(info, store_->Peek("e"));
  EXPECT_TRUE(info.expired);
}

TEST_P(StoreTest, StatsCountVerdictsAndLatencies) {
  const Reservation r = MustReserve("e");
  MustReserve("e");
  ASSERT_THAT(store_->Commit("e", r.token), IsOk());
  MustReserve("e");
  const Stats stats = store_->GetStats();
  EXPECT_EQ(stats.reserved, 1u);
  EXPECT_EQ(stats.in_flight, 1u);
  EXPECT_EQ(stats.duplicate, 1u);
  EXPECT_EQ(stats.committed, 1u);
  EXPECT_EQ(stats.reserve_latency.count, 3u);
  EXPECT_EQ(stats.commit_latency.count, 1u);
  EXPECT_GT(stats.reserve_latency.p50, absl::ZeroDuration());
  EXPECT_LE(stats.reserve_latency.p50, stats.reserve_latency.p999);
  EXPECT_THAT(stats.ToPrometheus(), HasSubstr("idem_reserved_total 1\n"));
}

TEST_P(StoreTest, CommitBatchCommitsHoldersInOneWriteAndAbortsLosers) {
  const Reservation a = MustReserve("a");
  const Reservation b = MustReserve("b");
  const Reservation lost = MustReserve("lost");
  clock_->Advance(options_.lease);
  const Reservation taker = MustReserve("lost");
  ASSERT_TRUE(taker.takeover);
  // The takeover refreshed nothing else: a and b are past their lease but nobody took them over.
  rocksdb::ColumnFamilyHandle* ledger = store_->db()->DefaultColumnFamily();
  rocksdb::WriteBatch effects_a, effects_b, effects_lost;
  effects_a.Put(ledger, "ledger:a", "1");
  effects_b.Put(ledger, "ledger:b", "2");
  effects_lost.Put(ledger, "ledger:lost", "zombie");
  const rocksdb::SequenceNumber before = store_->db()->GetLatestSequenceNumber();
  std::vector<CommitRequest> requests = {{"a", a.token, "ra", &effects_a},
                                         {"lost", lost.token, "rl", &effects_lost},
                                         {"b", b.token, "rb", &effects_b},
                                         {"", 1, "", nullptr}};
  std::vector<absl::Status> results = store_->CommitBatch(requests);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_THAT(results[0], IsOk());
  EXPECT_THAT(results[1], StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(results[2], IsOk());
  EXPECT_THAT(results[3], StatusIs(absl::StatusCode::kInvalidArgument));
  // One write: two effects + two markers, four sequence numbers, one batch.
  EXPECT_EQ(store_->db()->GetLatestSequenceNumber(), before + 4);
  std::string value;
  EXPECT_TRUE(store_->db()->Get(rocksdb::ReadOptions(), "ledger:a", &value).ok());
  EXPECT_TRUE(store_->db()->Get(rocksdb::ReadOptions(), "ledger:b", &value).ok());
  EXPECT_TRUE(store_->db()->Get(rocksdb::ReadOptions(), "ledger:lost", &value).IsNotFound());
  EXPECT_EQ(MustReserve("a").result, "ra");
  EXPECT_EQ(MustReserve("b").result, "rb");
  EXPECT_EQ(MustReserve("lost").verdict, Verdict::kInFlight);
  // Repeating the batch is OK and writes nothing.
  results = store_->CommitBatch({requests.data(), 1});
  EXPECT_THAT(results[0], IsOk());
  EXPECT_EQ(store_->db()->GetLatestSequenceNumber(), before + 4);
}

TEST_P(StoreTest, InDoubtListsReservationsLeftByAStoppedProcess) {
  MustReserve("left-1");
  MustReserve("left-2");
  const Reservation done = MustReserve("done");
  ASSERT_THAT(store_->Commit("done", done.token), IsOk());
  Reopen();
  IDEM_ASSERT_OK_AND_ASSIGN(std::vector<InDoubtReservation> in_doubt, store_->InDoubt());
  if (!options_.durable_reservations) {
    EXPECT_TRUE(in_doubt.empty()) << "in-memory leases leave nothing behind";
    return;
  }
  ASSERT_EQ(in_doubt.size(), 2u);
  EXPECT_EQ(in_doubt[0].id, "left-1");
  EXPECT_EQ(in_doubt[1].id, "left-2");
  EXPECT_EQ(in_doubt[0].deadline, clock_->Now() + options_.lease);
  IDEM_ASSERT_OK_AND_ASSIGN(in_doubt, store_->InDoubt(1));
  EXPECT_EQ(in_doubt.size(), 1u);
}

TEST_P(StoreTest, HotDuplicateIsAnsweredWithoutRocksDb) {
  const Reservation r = MustReserve("hot");
  ASSERT_THAT(store_->Commit("hot", r.token, "cached"), IsOk());
  // Above RocksDB's default level: idem leaves a level the caller chose alone (engine/perf_counters.h).
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);
  rocksdb::get_perf_context()->Reset();
  EXPECT_EQ(MustReserve("hot").result, "cached");
  EXPECT_EQ(rocksdb::get_perf_context()->get_from_memtable_count, 0u);
  MustReserve("cold-miss");
  EXPECT_GT(rocksdb::get_perf_context()->get_from_memtable_count, 0u) << "the control: a miss does read";
  EXPECT_EQ(rocksdb::GetPerfLevel(), rocksdb::PerfLevel::kEnableTimeExceptForMutex);
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);  // RocksDB's default
}

TEST_P(StoreTest, RecordKeyIsWhereTheRecordIs) {
  const Reservation r = MustReserve("where");
  ASSERT_THAT(store_->Commit("where", r.token, "here"), IsOk());
  std::string value;
  ASSERT_TRUE(
      store_->db()->Get(rocksdb::ReadOptions(), store_->column_family(), store_->RecordKey("where"), &value).ok());
  EXPECT_NE(store_->RecordKey("where"), "where") << "a new store hashes its keys";
  EXPECT_TRUE(absl::EndsWith(store_->RecordKey("where"), "where"));
}

TEST_P(StoreTest, CommitOfOwnReservationReadsNothingBack) {
  const Reservation r = MustReserve("own");
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);
  rocksdb::get_perf_context()->Reset();
  ASSERT_THAT(store_->Commit("own", r.token, "done"), IsOk());
  EXPECT_EQ(rocksdb::get_perf_context()->get_from_memtable_count, 0u) << "the hold is known in memory";
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
}

TEST_P(StoreTest, ReleaseAndExtendOfOwnDurableReservationRewriteItsRecord) {
  if (!options_.durable_reservations) GTEST_SKIP() << "only durable reservations have records";
  const Reservation a = MustReserve("a");
  const Reservation b = MustReserve("b");
  clock_->Advance(absl::Seconds(10));
  ASSERT_THAT(store_->Extend("a", a.token), IsOk());
  ASSERT_THAT(store_->Release("b", b.token), IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(std::vector<InDoubtReservation> in_doubt, store_->InDoubt());
  ASSERT_EQ(in_doubt.size(), 1u) << "the released one is gone from RocksDB too";
  EXPECT_EQ(in_doubt[0].id, "a");
  EXPECT_EQ(in_doubt[0].deadline, clock_->Now() + options_.lease) << "the extended deadline was written";
  Reopen();
  const Reservation again = MustReserve("a");
  EXPECT_TRUE(again.takeover && again.holder_gone);
  EXPECT_EQ(again.previous_token, a.token);
  EXPECT_FALSE(MustReserve("b").takeover) << "a released ID is simply new";
}

TEST_P(StoreTest, RocksDbPerfCountersAreOffDuringCallsAtTheDefaultLevel) {
  ASSERT_EQ(rocksdb::GetPerfLevel(), rocksdb::PerfLevel::kEnableCount) << "RocksDB's default level";
  rocksdb::get_perf_context()->Reset();
  const Reservation r = MustReserve("quiet");
  ASSERT_THAT(store_->Commit("quiet", r.token), IsOk());
  MustReserve("quiet");
  EXPECT_EQ(rocksdb::get_perf_context()->get_from_memtable_count, 0u);
  EXPECT_EQ(rocksdb::get_perf_context()->write_memtable_time + rocksdb::get_perf_context()->get_snapshot_time, 0u);
  EXPECT_EQ(rocksdb::GetPerfLevel(), rocksdb::PerfLevel::kEnableCount) << "the caller's level is restored";
  // The control: the same calls made straight to RocksDB count.
  std::string value;
  store_->db()
      ->Get(rocksdb::ReadOptions(), store_->column_family(), store_->RecordKey("quiet"), &value)
      .PermitUncheckedError();
  EXPECT_GT(rocksdb::get_perf_context()->get_from_memtable_count, 0u);
}

TEST_P(StoreTest, ReusedIdWithAnotherPayloadIsConflictNotDuplicate) {
  ReserveOptions payload_a;
  payload_a.fingerprint = 0xA;
  ReserveOptions payload_b;
  payload_b.fingerprint = 0xB;
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("e", payload_a));
  ASSERT_EQ(r.verdict, Verdict::kReserved);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation busy, store_->Reserve("e", payload_b));
  EXPECT_EQ(busy.verdict, Verdict::kConflict) << "in flight with another payload";
  ASSERT_THAT(store_->Commit("e", r.token, "done-a"), IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation same, store_->Reserve("e", payload_a));
  EXPECT_EQ(same.verdict, Verdict::kDuplicate);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation other, store_->Reserve("e", payload_b));
  EXPECT_EQ(other.verdict, Verdict::kConflict);
  EXPECT_EQ(other.result, "done-a");
  // The fingerprint survives a restart (it is in the done record), and callers without one never conflict.
  Reopen();
  IDEM_ASSERT_OK_AND_ASSIGN(other, store_->Reserve("e", payload_b));
  EXPECT_EQ(other.verdict, Verdict::kConflict);
  EXPECT_EQ(MustReserve("e").verdict, Verdict::kDuplicate);
  EXPECT_EQ(store_->GetStats().conflicts, 1u);
}

TEST_P(StoreTest, WaitingCallerGetsTheDuplicateWhenTheHolderCommits) {
  const Reservation holder = MustReserve("e");
  std::thread committer([&] {
    absl::SleepFor(absl::Milliseconds(50));
    EXPECT_THAT(store_->Commit("e", holder.token, "from-holder"), IsOk());
  });
  ReserveOptions wait;
  wait.wait = absl::Seconds(30);
  const absl::Time start = absl::Now();
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("e", wait));
  committer.join();
  EXPECT_EQ(r.verdict, Verdict::kDuplicate);
  EXPECT_EQ(r.result, "from-holder");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "woken by the commit, not by the timeout";
  EXPECT_GE(store_->GetStats().waits, 1u);
}

TEST_P(StoreTest, WaitingCallerGetsTheReservationWhenTheHolderReleases) {
  const Reservation holder = MustReserve("e");
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(50));
    EXPECT_THAT(store_->Release("e", holder.token), IsOk());
  });
  ReserveOptions wait;
  wait.wait = absl::Seconds(30);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("e", wait));
  releaser.join();
  EXPECT_EQ(r.verdict, Verdict::kReserved);
  EXPECT_GT(r.token, holder.token);
}

TEST_P(StoreTest, WaitIsBoundedWhenTheHolderNeverFinishes) {
  MustReserve("e");
  ReserveOptions wait;
  wait.wait = absl::Milliseconds(30);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("e", wait));
  EXPECT_EQ(r.verdict, Verdict::kInFlight);
  EXPECT_EQ(store_->GetStats().in_flight, 1u) << "one verdict returned, however many times it waited";
}

TEST_P(StoreTest, BackwardClockJumpNeverRevivesWhatExpired) {
  const Reservation first = MustReserve("e");
  clock_->Advance(options_.lease + absl::Seconds(10));  // the lease has ended...
  MustReserve("other");                                 // ...and the store has seen that time
  clock_->Advance(-absl::Seconds(20));                  // the wall clock steps back inside the old lease
  const Reservation again = MustReserve("e");
  EXPECT_EQ(again.verdict, Verdict::kReserved) << "store time does not go back: the lease stays ended";
  EXPECT_TRUE(again.takeover);
  EXPECT_THAT(store_->Commit("e", first.token), StatusIs(absl::StatusCode::kAborted));
}

INSTANTIATE_TEST_SUITE_P(Modes, StoreTest, ::testing::Bool(), [](const auto& info) {
  return info.param ? std::string("DurableReservations") : std::string("InMemoryLeases");
});

TEST(StoreOpenTest, RefusesContradictoryOptionsAndUnopenablePaths) {
  ScratchDir dir;
  Options options;
  options.lease = absl::Hours(2);
  options.ttl = absl::Hours(1);
  EXPECT_THAT(Store::Open(options, dir.Sub("db")), StatusIs(absl::StatusCode::kInvalidArgument));
  options = Options();
  options.max_id_bytes = 0;
  EXPECT_THAT(Store::Open(options, dir.Sub("db")), StatusIs(absl::StatusCode::kInvalidArgument));

  options = Options();
  const std::string file = dir.Sub("a-file");
  { std::ofstream(file) << "not a store"; }
  EXPECT_THAT(Store::Open(options, file), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Store::Open(options, file + "/below-a-file"), Not(IsOk()));
  EXPECT_THAT(Store::Open(options, ""), StatusIs(absl::StatusCode::kInvalidArgument));
}

// In the same process a second Open is a programming error (kFailedPrecondition), not a wait for
// another process to let go (kUnavailable, tested with real processes in crash_test).
TEST(StoreOpenTest, SecondOpenInTheSameProcessIsFailedPrecondition) {
  ScratchDir dir;
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto first, Store::Open(options, dir.Sub("db")));
  absl::StatusOr<std::unique_ptr<Store>> second = Store::Open(options, dir.Sub("db"));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(second.status().message(), HasSubstr("already open in this process"));
  EXPECT_EQ(first->Reserve("still-works")->verdict, Verdict::kReserved);
}

// A clock whose wall time and monotonic time are set separately, as NTP steps make them differ.
class SteppedClock : public Clock {
 public:
  absl::Time Now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return wall_;
  }
  absl::Duration Monotonic() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return monotonic_;
  }
  void Step(absl::Duration wall) {  // the wall clock jumps; no time passes
    std::lock_guard<std::mutex> lock(mu_);
    wall_ += wall;
  }
  void Pass(absl::Duration d) {  // time passes
    std::lock_guard<std::mutex> lock(mu_);
    wall_ += d;
    monotonic_ += d;
  }

 private:
  mutable std::mutex mu_;
  absl::Time wall_ = absl::FromUnixSeconds(1'700'000'000);
  absl::Duration monotonic_ = absl::Hours(100);
};

TEST(InMemoryLeaseClockTest, WallClockStepsNeitherEndNorStretchALease) {
  ScratchDir dir;
  auto clock = std::make_shared<SteppedClock>();
  Options options = ManualOptions(clock);
  options.durable_reservations = false;
  options.lease = absl::Seconds(30);
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));

  IDEM_ASSERT_OK_AND_ASSIGN(Reservation first, store->Reserve("event"));
  ASSERT_EQ(first.verdict, Verdict::kReserved);
  clock->Step(absl::Hours(2));  // NTP steps the wall clock forward
  clock->Pass(absl::Seconds(10));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation during, store->Reserve("event"));
  EXPECT_EQ(during.verdict, Verdict::kInFlight) << "a forward wall-clock step ended a live lease";

  clock->Step(-absl::Hours(3));    // and back, further than it went
  clock->Pass(absl::Seconds(21));  // 31 s have passed since the reservation
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation after, store->Reserve("event"));
  EXPECT_EQ(after.verdict, Verdict::kReserved) << "a backward wall-clock step stretched the lease";
  EXPECT_TRUE(after.takeover);
  EXPECT_THAT(store->Commit("event", first.token), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(store->Commit("event", after.token), IsOk());
}

}  // namespace
}  // namespace idem
