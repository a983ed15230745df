// The changelog's byte format and the replay rules, case by case (the randomized check of the whole
// protocol is changelog_model_test).
#include <string>
#include <vector>

#include "idem/changelog.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/support/changelog_util.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Rec;

using ::idem::testing::IsOk;
using ::idem::testing::StatusIs;
using Type = ChangelogRecord::Type;
using Kind = ChangelogOp::Kind;

ChangelogRecord Claim(uint64_t ordinal, uint64_t claimant) { return Rec(Type::kClaim, {ordinal, claimant}); }

ChangelogRecord Batch(ClaimId claim, uint64_t sequence, std::string key, int64_t input = -1) {
  ChangelogRecord r = Rec(Type::kBatch, claim, sequence, input);
  r.ops.push_back(ChangelogOp{Kind::kPut, 1, std::move(key), "v"});
  return r;
}

std::vector<ChangelogRecord> Samples() {
  std::vector<ChangelogRecord> out;
  out.push_back(Claim(7, 0xfeedfacecafebeefULL));
  ChangelogRecord batch = Rec(Type::kBatch, {7, 3}, 123456789, 42);
  batch.ops = {ChangelogOp{Kind::kPut, 0, std::string("k\0ey", 4), std::string(300, 'x')},
               ChangelogOp{Kind::kDelete, 2, "gone", ""}, ChangelogOp{Kind::kSingleDelete, 1, "", ""}};
  out.push_back(batch);
  out.push_back(Rec(Type::kBatch, {1, 1}, 0, -1));  // no ops, no input offset
  out.push_back(Rec(Type::kSnapshotBegin, {7, 3}, 99, 1000));
  ChangelogRecord chunk = Rec(Type::kSnapshotChunk, {7, 3}, 99);
  chunk.ops = {ChangelogOp{Kind::kPut, 0, "a", "1"}, ChangelogOp{Kind::kPut, 1, "b", ""}};
  out.push_back(chunk);
  ChangelogRecord end = Rec(Type::kSnapshotEnd, {7, 3}, 99);
  end.entry_count = 2;
  end.checksum = UINT64_MAX - 5;
  out.push_back(end);
  return out;
}

void ExpectSame(const ChangelogRecord& a, const ChangelogRecord& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.claim, b.claim);
  EXPECT_EQ(a.sequence, b.sequence);
  if (a.type == Type::kBatch || a.type == Type::kSnapshotBegin) {
    EXPECT_EQ(a.input_offset, b.input_offset);
  }
  EXPECT_EQ(a.ops, b.ops);
  EXPECT_EQ(a.entry_count, b.entry_count);
  EXPECT_EQ(a.checksum, b.checksum);
}

TEST(ChangelogRecordTest, EveryTypeRoundTrips) {
  for (const ChangelogRecord& r : Samples()) {
    IDEM_ASSERT_OK_AND_ASSIGN(ChangelogRecord back, DecodeChangelogRecord(EncodeChangelogRecord(r)));
    ExpectSame(r, back);
  }
}

// A batch that states its predecessor is written as version 2; one that does not (as the previous
// release wrote every batch) as version 1, and both read back as written.
TEST(ChangelogRecordTest, BatchesWithAndWithoutTheirPredecessorRoundTrip) {
  ChangelogRecord ordered = Samples()[1];
  ordered.previous_sequence = 123456700;
  const std::string v2 = EncodeChangelogRecord(ordered);
  EXPECT_EQ(v2[1], 2);
  IDEM_ASSERT_OK_AND_ASSIGN(ChangelogRecord back, DecodeChangelogRecord(v2));
  EXPECT_EQ(back.previous_sequence, std::optional<uint64_t>(123456700));
  ExpectSame(ordered, back);
  const std::string v1 = EncodeChangelogRecord(Samples()[1]);
  EXPECT_EQ(v1[1], 1);
  IDEM_ASSERT_OK_AND_ASSIGN(ChangelogRecord old, DecodeChangelogRecord(v1));
  EXPECT_FALSE(old.previous_sequence.has_value());
  ExpectSame(Samples()[1], old);
  ordered.previous_sequence = 0;  // the first batch of a claim
  IDEM_ASSERT_OK_AND_ASSIGN(back, DecodeChangelogRecord(EncodeChangelogRecord(ordered)));
  EXPECT_EQ(back.previous_sequence, std::optional<uint64_t>(0));
}

TEST(ChangelogRecordTest, EveryTruncationAndExtensionIsDataLoss) {
  for (const ChangelogRecord& r : Samples()) {
    const std::string bytes = EncodeChangelogRecord(r);
    for (size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_THAT(DecodeChangelogRecord(bytes.substr(0, n)), StatusIs(absl::StatusCode::kDataLoss))
          << "type " << static_cast<int>(r.type) << " cut at " << n;
    }
    EXPECT_THAT(DecodeChangelogRecord(bytes + "x"), StatusIs(absl::StatusCode::kDataLoss));
  }
}

TEST(ChangelogRecordTest, UnknownMagicVersionTypeOrOperationIsDataLoss) {
  const std::string good = EncodeChangelogRecord(Samples()[1]);
  for (size_t at : {0, 1, 2}) {
    std::string bad = good;
    bad[at] = static_cast<char>(0x7f);
    absl::StatusOr<ChangelogRecord> r = DecodeChangelogRecord(bad);
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kDataLoss)) << "byte " << at;
  }
  std::string version3 = good;
  version3[1] = 3;
  EXPECT_THAT(std::string(DecodeChangelogRecord(version3).status().message()), ::testing::HasSubstr("version 3"));
  // A delete inside a snapshot chunk: a snapshot holds values only.
  ChangelogRecord chunk = Rec(Type::kSnapshotChunk, {1, 1}, 5);
  chunk.ops = {ChangelogOp{Kind::kDelete, 0, "k", ""}};
  EXPECT_THAT(DecodeChangelogRecord(EncodeChangelogRecord(chunk)), StatusIs(absl::StatusCode::kDataLoss));
  // An operation count far beyond the bytes does not allocate for it.
  std::string huge = EncodeChangelogRecord(Rec(Type::kBatch, {1, 1}, 1, -1));
  huge.back() = static_cast<char>(0xff);
  huge += std::string("\xff\xff\xff\xff\x0f", 5);
  EXPECT_THAT(DecodeChangelogRecord(huge), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ChangelogRecordTest, OpsOfBatchNamesFamiliesByIndexAndRefusesWhatCannotReplay) {
  auto family_of = [](uint32_t cf) -> std::optional<uint32_t> {
    if (cf == 9) return 0;
    if (cf == 4) return 1;
    return std::nullopt;
  };
  // A batch built on column-family IDs directly (no DB needed): WriteBatch's rep names them by ID.
  struct FakeCf : rocksdb::ColumnFamilyHandle {
    explicit FakeCf(uint32_t id) : id_(id) {}
    const std::string& GetName() const override { return name_; }
    uint32_t GetID() const override { return id_; }
    rocksdb::Status GetDescriptor(rocksdb::ColumnFamilyDescriptor*) override { return rocksdb::Status::OK(); }
    const rocksdb::Comparator* GetComparator() const override { return nullptr; }
    uint32_t id_;
    std::string name_ = "fake";
  };
  FakeCf records(9), ledger(4), other(5);
  rocksdb::WriteBatch batch;
  batch.Put(&ledger, "acct", "7");
  batch.Delete(&ledger, "old");
  batch.SingleDelete(&ledger, "once");
  batch.Put(&records, "marker", "done");
  IDEM_ASSERT_OK_AND_ASSIGN(std::vector<ChangelogOp> ops, OpsOfBatch(batch, family_of));
  EXPECT_EQ(ops, (std::vector<ChangelogOp>{{Kind::kPut, 1, "acct", "7"},
                                           {Kind::kDelete, 1, "old", ""},
                                           {Kind::kSingleDelete, 1, "once", ""},
                                           {Kind::kPut, 0, "marker", "done"}}));
  rocksdb::WriteBatch foreign;
  foreign.Put(&other, "x", "y");
  EXPECT_THAT(OpsOfBatch(foreign, family_of), StatusIs(absl::StatusCode::kInvalidArgument));
  rocksdb::WriteBatch merge;
  merge.Merge(&ledger, "x", "y");
  EXPECT_THAT(OpsOfBatch(merge, family_of), StatusIs(absl::StatusCode::kInvalidArgument));
  rocksdb::WriteBatch range;
  range.DeleteRange(&ledger, "a", "b");
  EXPECT_THAT(OpsOfBatch(range, family_of), StatusIs(absl::StatusCode::kInvalidArgument));
  rocksdb::WriteBatch log_data;
  log_data.PutLogData("x");
  EXPECT_THAT(OpsOfBatch(log_data, family_of), StatusIs(absl::StatusCode::kInvalidArgument));
}

// Records what the replayer hands on, in order.
struct Recorder : ChangelogReplayer::Sink {
  absl::Status SnapshotEntry(const ChangelogOp& entry) override {
    events.push_back("entry " + entry.key);
    return absl::OkStatus();
  }
  absl::Status SnapshotDone() override {
    events.push_back("done");
    return absl::OkStatus();
  }
  absl::Status Apply(const ChangelogRecord& batch) override {
    events.push_back("apply " + batch.ops[0].key);
    return absl::OkStatus();
  }
  std::vector<std::string> events;
};

absl::Status FeedAll(ChangelogReplayer* replayer, const std::vector<ChangelogRecord>& log, int64_t first = 0) {
  for (size_t i = 0; i < log.size(); ++i) {
    if (absl::Status s = replayer->Feed(first + static_cast<int64_t>(i), EncodeChangelogRecord(log[i])); !s.ok()) {
      return s;
    }
  }
  return replayer->Finish();
}

TEST(ChangelogReplayerTest, ABatchCountsOnlyUnderTheLastClaimThatCounted) {
  const ClaimId a{1, 11}, b{2, 22}, rival{2, 33}, skipper{4, 44};
  Recorder sink;
  ChangelogReplayer replayer(ChangelogReplayer::Start::kLogStart, &sink);
  const std::vector<ChangelogRecord> log = {
      Batch({0, 0}, 1, "before-any-claim"),
      Claim(a.ordinal, a.claimant),
      Batch(a, 1, "a1", 10),
      Claim(b.ordinal, b.claimant),
      Batch(a, 2, "a2-zombie", 11),          // written after b's claim: ignored
      Claim(rival.ordinal, rival.claimant),  // the same ordinal again: lost
      Batch(rival, 1, "rival"),
      Batch(b, 1, "b1", 12),
      Claim(skipper.ordinal, skipper.claimant),  // skips ordinal 3: does not count
      Batch(skipper, 1, "skipper"),
      Batch(b, 2, "b2", 13),
  };
  ASSERT_THAT(FeedAll(&replayer, log), IsOk());
  EXPECT_EQ(sink.events, (std::vector<std::string>{"apply a1", "apply b1", "apply b2"}));
  EXPECT_EQ(replayer.current_claim(), b);
  EXPECT_EQ(replayer.input_offset(), 13);
  EXPECT_EQ(replayer.batches_applied(), 3u);
  EXPECT_EQ(replayer.batches_fenced(), 4u);
  EXPECT_EQ(replayer.claims_lost(), 2u);
}

// A local copy catches up from its owner's claim: its own batches again (they are in the copy), and
// what later owners wrote under claims that count.
TEST(ChangelogReplayerTest, ALocalCopyCatchesUpUnderItsClaim) {
  const ClaimId mine{5, 1}, next{6, 2}, older{4, 9};
  Recorder sink;
  ChangelogReplayer replayer(mine, &sink);
  const std::vector<ChangelogRecord> log = {
      Claim(mine.ordinal, mine.claimant), Batch(mine, 1, "m1"), Batch(older, 7, "older-zombie"), Batch(mine, 2, "m2"),
      Claim(next.ordinal, next.claimant), Batch(next, 1, "n1"),
  };
  ASSERT_THAT(FeedAll(&replayer, log, 70), IsOk());
  EXPECT_EQ(sink.events, (std::vector<std::string>{"apply m1", "apply m2", "apply n1"}));
  EXPECT_EQ(replayer.current_claim(), next);
  EXPECT_EQ(replayer.last_offset(), 75);
}

// A copy whose owner went on committing after a newer claim holds commits nobody else counts: stale.
TEST(ChangelogReplayerTest, ALocalCopyWhoseOwnerWasSupersededIsStale) {
  const ClaimId mine{5, 1}, next{6, 2};
  Recorder sink;
  ChangelogReplayer replayer(mine, &sink);
  const std::vector<ChangelogRecord> log = {Batch(mine, 1, "m1"), Claim(next.ordinal, next.claimant),
                                            Batch(mine, 2, "m2-zombie"), Batch(next, 1, "n1")};
  EXPECT_THAT(FeedAll(&replayer, log), StatusIs(absl::StatusCode::kAborted));
}

std::vector<ChangelogRecord> SnapshotOf(ClaimId claim, uint64_t id, const std::vector<std::string>& keys,
                                        size_t per_chunk) {
  std::vector<ChangelogRecord> out;
  out.push_back(Rec(Type::kSnapshotBegin, claim, id, 100));
  uint64_t checksum = 0;
  ChangelogRecord chunk = Rec(Type::kSnapshotChunk, claim, id);
  for (const std::string& k : keys) {
    ChangelogOp e{Kind::kPut, 0, k, "v"};
    checksum = SnapshotChecksum(checksum, e);
    chunk.ops.push_back(e);
    if (chunk.ops.size() == per_chunk) {
      out.push_back(chunk);
      chunk.ops.clear();
    }
  }
  if (!chunk.ops.empty()) out.push_back(chunk);
  ChangelogRecord end = Rec(Type::kSnapshotEnd, claim, id);
  end.entry_count = keys.size();
  end.checksum = checksum;
  out.push_back(end);
  return out;
}

// A batch that names its predecessor under its claim (as writers of this release do).
ChangelogRecord Ordered(ClaimId claim, uint64_t sequence, uint64_t previous, std::string key) {
  ChangelogRecord r = Batch(claim, sequence, std::move(key), static_cast<int64_t>(sequence));
  r.previous_sequence = previous;
  return r;
}

// A record that could not be produced (a10 -> [a20 missing] -> a30): a30 and every later batch of the
// claim were computed on a20's effects and must not count; the next claim's batches do.
TEST(ChangelogReplayerTest, ABatchWhosePredecessorIsMissingDoesNotCountNorDoesAnyLaterOneOfItsClaim) {
  const ClaimId a{1, 11}, b{2, 22};
  Recorder sink;
  ChangelogReplayer replayer(ChangelogReplayer::Start::kLogStart, &sink);
  const std::vector<ChangelogRecord> log = {
      Claim(a.ordinal, a.claimant),
      Ordered(a, 10, 0, "a10"),
      /* a20 never reached the log */ Ordered(a, 30, 20, "a30"),
      Ordered(a, 40, 30, "a40"),
      Claim(b.ordinal, b.claimant),
      Ordered(b, 5, 0, "b5"),
      Ordered(b, 6, 5, "b6"),
  };
  ASSERT_THAT(FeedAll(&replayer, log), IsOk());
  EXPECT_EQ(sink.events, (std::vector<std::string>{"apply a10", "apply b5", "apply b6"}));
  EXPECT_EQ(replayer.batches_after_gap(), 2u);
  EXPECT_EQ(replayer.batches_applied(), 3u);
  EXPECT_EQ(replayer.input_offset(), 6);

  // The claim's first batch must say it is the first: one whose predecessor is missing is a gap too.
  Recorder first_sink;
  ChangelogReplayer first(ChangelogReplayer::Start::kLogStart, &first_sink);
  ASSERT_THAT(FeedAll(&first, {Claim(a.ordinal, a.claimant), Ordered(a, 20, 10, "a20")}), IsOk());
  EXPECT_TRUE(first_sink.events.empty());
  EXPECT_EQ(first.batches_after_gap(), 1u);
}

// From a snapshot, the writer's first batch after it must follow a batch the snapshot holds.
TEST(ChangelogReplayerTest, FromASnapshotAGapAfterItIsSeen) {
  const ClaimId a{3, 1};
  std::vector<ChangelogRecord> log = SnapshotOf(a, 50, {"k1"}, 1);
  log.push_back(Ordered(a, 60, 45, "a60"));  // its predecessor (45) is in the snapshot
  log.push_back(Ordered(a, 70, 60, "a70"));
  log.push_back(Ordered(a, 90, 80, "a90"));  // a80 is missing
  Recorder sink;
  ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
  ASSERT_THAT(FeedAll(&replayer, log, 100), IsOk());
  EXPECT_EQ(sink.events, (std::vector<std::string>{"entry k1", "done", "apply a60", "apply a70"}));
  EXPECT_EQ(replayer.batches_after_gap(), 1u);

  std::vector<ChangelogRecord> after = SnapshotOf(a, 50, {"k1"}, 1);
  after.push_back(Ordered(a, 60, 55, "a60"));  // a55 came after the snapshot began and is missing
  Recorder after_sink;
  ChangelogReplayer from_snapshot(ChangelogReplayer::Start::kSnapshot, &after_sink);
  ASSERT_THAT(FeedAll(&from_snapshot, after, 100), IsOk());
  EXPECT_EQ(after_sink.events, (std::vector<std::string>{"entry k1", "done"}));
}

// A local copy holds every batch of its own claim; when one of them is missing from the log, the log
// counts less than the copy holds: the copy is stale.
TEST(ChangelogReplayerTest, ALocalCopyWhoseClaimHasAGapInTheLogIsStale) {
  const ClaimId mine{5, 1};
  Recorder sink;
  ChangelogReplayer replayer(mine, &sink);
  const std::vector<ChangelogRecord> log = {Claim(mine.ordinal, mine.claimant), Ordered(mine, 1, 0, "m1"),
                                            Ordered(mine, 3, 2, "m3")};
  EXPECT_THAT(FeedAll(&replayer, log, 70), StatusIs(absl::StatusCode::kAborted));
}

// A restore proves the log still holds what was recorded as written: a log recreated empty, renamed or
// cut below a recorded end is kDataLoss, however small the partition (no snapshot pointer yet).
TEST(ChangelogReplayerTest, ALogEndingBelowARecordedEndIsDataLoss) {
  EXPECT_THAT(CheckRestorable(std::nullopt, 0, 0, 0), IsOk());  // nothing recorded, nothing there
  EXPECT_THAT(CheckRestorable(std::nullopt, 3, 0, 3), IsOk());
  EXPECT_THAT(CheckRestorable(std::nullopt, 3, 0, 10), IsOk());
  absl::Status empty = CheckRestorable(std::nullopt, 3, 0, 0);  // recreated: empty, starting at 0 again
  EXPECT_THAT(empty, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(std::string(empty.message()), ::testing::HasSubstr("recreated"));
  EXPECT_THAT(CheckRestorable(std::nullopt, 3, 0, 2), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(CheckRestorable(7, 0, 0, 7), StatusIs(absl::StatusCode::kDataLoss));  // the pointer's record is gone
  EXPECT_THAT(CheckRestorable(7, 0, 0, 8), IsOk());
  EXPECT_THAT(CheckRestorable(7, 20, 8, 20), StatusIs(absl::StatusCode::kDataLoss));  // retention: as before
}

TEST(ChangelogReplayerTest, FromASnapshotBatchesReadDuringItAreAppliedAfterIt) {
  const ClaimId a{3, 1}, b{4, 2};
  std::vector<ChangelogRecord> log = SnapshotOf(a, 50, {"k1", "k2", "k3"}, 2);
  // Interleaved with the snapshot's chunks: a's later batch, a's batch already in the snapshot, b's
  // claim, a's batch after it (fenced), b's batch.
  log.insert(log.begin() + 2, Batch(a, 51, "a51"));
  log.insert(log.begin() + 3, Batch(a, 50, "a50-in-snapshot"));
  log.push_back(Claim(b.ordinal, b.claimant));
  log.push_back(Batch(a, 52, "a52-zombie"));
  log.push_back(Batch(b, 1, "b1"));
  Recorder sink;
  ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
  ASSERT_THAT(FeedAll(&replayer, log, 1000), IsOk());
  EXPECT_EQ(sink.events,
            (std::vector<std::string>{"entry k1", "entry k2", "entry k3", "done", "apply a51", "apply b1"}));
  EXPECT_EQ(replayer.current_claim(), b);
}

TEST(ChangelogReplayerTest, ASnapshotThatDoesNotReadAsWrittenIsDataLoss) {
  const ClaimId a{1, 1};
  {  // the pointer does not name a SnapshotBegin
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
    EXPECT_THAT(FeedAll(&replayer, {Claim(1, 1)}), StatusIs(absl::StatusCode::kDataLoss));
  }
  {  // nothing at the pointer
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
    EXPECT_THAT(replayer.Finish(), StatusIs(absl::StatusCode::kDataLoss));
  }
  {  // cut inside: its end never came
    std::vector<ChangelogRecord> log = SnapshotOf(a, 9, {"a", "b", "c"}, 1);
    log.pop_back();
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
    EXPECT_THAT(FeedAll(&replayer, log), StatusIs(absl::StatusCode::kDataLoss));
  }
  {  // a chunk lost: count and checksum disagree
    std::vector<ChangelogRecord> log = SnapshotOf(a, 9, {"a", "b", "c"}, 1);
    log.erase(log.begin() + 2);
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
    EXPECT_THAT(FeedAll(&replayer, log), StatusIs(absl::StatusCode::kDataLoss));
  }
  {  // a value changed: the checksum disagrees
    std::vector<ChangelogRecord> log = SnapshotOf(a, 9, {"a", "b", "c"}, 3);
    log[1].ops[1].value = "w";
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
    EXPECT_THAT(FeedAll(&replayer, log), StatusIs(absl::StatusCode::kDataLoss));
  }
  {  // entries out of order (a sorted SST could not be written from them)
    std::vector<ChangelogRecord> log = SnapshotOf(a, 9, {"b", "a"}, 2);
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, &sink);
    EXPECT_THAT(FeedAll(&replayer, log), StatusIs(absl::StatusCode::kDataLoss));
  }
  {  // undecodable bytes
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kLogStart, &sink);
    EXPECT_THAT(replayer.Feed(0, std::string_view("garbage")), StatusIs(absl::StatusCode::kDataLoss));
  }
  {  // offsets that go back are the caller's mistake
    Recorder sink;
    ChangelogReplayer replayer(ChangelogReplayer::Start::kLogStart, &sink);
    ASSERT_THAT(replayer.Feed(5, Claim(1, 1)), IsOk());
    EXPECT_THAT(replayer.Feed(5, Claim(2, 1)), StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST(ChangelogReplayerTest, ARestoreWhoseStartRetentionRemovedIsDataLoss) {
  EXPECT_THAT(CheckReplayable(std::nullopt, 0), IsOk());
  EXPECT_THAT(CheckReplayable(std::nullopt, 1), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(CheckReplayable(500, 500), IsOk());
  EXPECT_THAT(CheckReplayable(500, 120), IsOk());
  absl::Status cut = CheckReplayable(500, 501);
  EXPECT_THAT(cut, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(std::string(cut.message()), ::testing::HasSubstr("silently"));
}

}  // namespace
}  // namespace idem
