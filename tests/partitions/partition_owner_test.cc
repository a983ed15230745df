// The owner's rules (idem/partition_owner.h) by themselves: the restore plan and what it must prove,
// a restore driven record by record with its claim won or lost, a claim's Batch records in order, the
// snapshot cadence, and what a committed position carries.
#include "idem/partition_owner.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/changelog_util.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::Rec;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;
using From = RestorePlan::From;

const PartitionLayout kLayout{"orders/3", {"ledger"}};

LocalCopy CleanCopy(uint64_t ordinal, int64_t offset) {
  LocalCopy c;
  c.layout = kLayout;
  c.clean = true;
  c.claim = {ordinal, 77};
  c.changelog_offset = offset;
  return c;
}

TEST(PlanRestoreTest, ANewPartitionIsRestoredFromTheLogStart) {
  RestoreFacts f;
  f.log_end = 0;
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  EXPECT_EQ(plan.from, From::kLogStart);
  EXPECT_EQ(plan.read_from, 0);
  EXPECT_EQ(plan.read_until, 0);
}

TEST(PlanRestoreTest, TheSnapshotPointedToIsUsedAndProvedToBeInTheLog) {
  RestoreFacts f;
  f.committed = CommitMetadata{40, 12};
  f.position_committed = true;
  f.log_start = 5;
  f.log_end = 40;
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  EXPECT_EQ(plan.from, From::kSnapshot);
  EXPECT_EQ(plan.read_from, 12);
  EXPECT_EQ(plan.read_until, 40);
  EXPECT_EQ(plan.recorded_end, 40);
  f.from_log_start = true;  // an audit: the log's start is gone
  EXPECT_THAT(PlanRestore(kLayout, f).status(), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(PlanRestoreTest, ALogShorterThanAnythingRecordedIsDataLossWhateverTheCopy) {
  RestoreFacts f;
  f.committed = CommitMetadata{40, std::nullopt};
  f.log_end = 0;  // recreated empty
  EXPECT_THAT(PlanRestore(kLayout, f).status(), StatusIs(absl::StatusCode::kDataLoss));
  // A position committed without idem's metadata: something was processed.
  RestoreFacts g;
  g.position_committed = true;
  EXPECT_THAT(PlanRestore(kLayout, g).status(), StatusIs(absl::StatusCode::kDataLoss));
  // A kept copy proves the log reached its claim.
  RestoreFacts h;
  h.copy = CleanCopy(2, 30);
  h.log_end = 20;
  EXPECT_THAT(PlanRestore(kLayout, h).status(), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(PlanRestoreTest, ACleanCopyNewerThanThePointerIsCaughtUp) {
  RestoreFacts f;
  f.copy = CleanCopy(2, 30);
  f.committed = CommitMetadata{35, 12};
  f.log_end = 50;
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  EXPECT_EQ(plan.from, From::kLocalCopy);
  EXPECT_EQ(plan.read_from, 30);
  EXPECT_EQ(plan.copy_claim, (ClaimId{2, 77}));
  // Retention may have removed the log's start: neither the copy nor a snapshot needs it.
  f.log_start = 20;
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kLocalCopy);
  f.log_start = 12;
  f.may_use_copy = false;
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kSnapshot);
  f.log_start = 13;
  EXPECT_THAT(PlanRestore(kLayout, f).status(), StatusIs(absl::StatusCode::kDataLoss)) << "the snapshot is gone";
  f.log_start = 0;
  f.may_use_copy = true;
  f.from_log_start = true;  // an audit reads the log, never the copy
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kLogStart);
  f.from_log_start = false;
  // Not when a snapshot is newer, the copy is unclean, of other families, or may not be used.
  f.committed->snapshot = 31;
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kSnapshot);
  f.committed->snapshot = 12;
  f.copy->clean = false;
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kSnapshot);
  f.copy->clean = true;
  f.copy->layout.effect_families = {"other"};
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kSnapshot);
  f.copy->layout = kLayout;
  f.may_use_copy = false;
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan refused, PlanRestore(kLayout, f));
  EXPECT_EQ(refused.from, From::kSnapshot);
  EXPECT_EQ(refused.recorded_end, 35) << "a refused copy still proves the end it noted";
}

TEST(PlanRestoreTest, WithoutAChangelogTheCleanCopyIsKeptOrTheStateStartsEmpty) {
  RestoreFacts f;
  f.has_changelog = false;
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kEmpty);
  f.copy = CleanCopy(4, -1);
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  EXPECT_EQ(plan.from, From::kKeepCopy);
  EXPECT_EQ(NextClaim(plan.copy_claim).ordinal, 5u);
  f.copy->clean = false;
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kEmpty);
}

TEST(ClaimTest, NextClaimFollowsTheLastThatCountedWithAFreshClaimant) {
  const ClaimId a = NextClaim({6, 1});
  const ClaimId b = NextClaim({6, 1});
  EXPECT_EQ(a.ordinal, 7u);
  EXPECT_NE(a.claimant, 0u);
  EXPECT_NE(a.claimant, b.claimant);
  IDEM_ASSERT_OK_AND_ASSIGN(ActivateOptions options, ActivateUnderClaim(a));
  IDEM_ASSERT_OK_AND_ASSIGN(TokenRange range, TokenRangeOfClaim(7));
  EXPECT_EQ(options.token_floor, range.floor);
  EXPECT_EQ(options.token_limit, range.limit);
  EXPECT_EQ(options.claim, a);
  EXPECT_TRUE(options.use_local_copy);
  EXPECT_THAT(ActivateUnderClaim({kMaxClaimOrdinal + 1, 1}).status(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ClaimBatchesTest, EachBatchNamesItsPredecessorUnderTheClaim) {
  ClaimBatches batches({3, 9});
  std::vector<ChangelogOp> ops = {ChangelogOp{ChangelogOp::Kind::kPut, 1, "k", "v"}};
  PartitionCommit first{&ops, 100, 10};
  PartitionCommit second{&ops, 140, 12};
  const ChangelogRecord a = batches.Next(first);
  const ChangelogRecord b = batches.Next(second);
  EXPECT_EQ(a.type, ChangelogRecord::Type::kBatch);
  EXPECT_EQ(a.claim, (ClaimId{3, 9}));
  EXPECT_EQ(a.sequence, 100u);
  EXPECT_EQ(a.previous_sequence, std::optional<uint64_t>(0));
  EXPECT_EQ(a.input_offset, 10);
  EXPECT_EQ(a.ops, ops);
  EXPECT_EQ(b.previous_sequence, std::optional<uint64_t>(100));
  EXPECT_EQ(b.input_offset, 12);
}

TEST(SnapshotCadenceTest, DueOnceTheLogSinceTheLastReachesTheLargerOfTheMinimumAndTheLastSize) {
  SnapshotCadence c(/*min_bytes=*/100, /*restore_bytes=*/30, /*bytes_now=*/1000);
  EXPECT_FALSE(c.Due(1069));
  EXPECT_TRUE(c.Due(1070)) << "the restore's bytes count";
  c.Wrote(1070, 1370);  // a 300-byte snapshot
  EXPECT_FALSE(c.Due(1669));
  EXPECT_TRUE(c.Due(1670));
  // Counts that go back (a caller's mistake) never wrap into "always" or "never" due.
  EXPECT_FALSE(c.Due(5));
  c.Wrote(2000, 1000);
  EXPECT_TRUE(c.Due(1100));
}

TEST(CommitMetadataTest, RoundTripAndThePreviousFormat) {
  const std::string encoded = EncodeCommitMetadata(CommitMetadata{41, 7});
  EXPECT_EQ(encoded, "idem2 log=41 snapshot=7");
  std::optional<CommitMetadata> m = DecodeCommitMetadata(encoded);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->log_end, 41);
  EXPECT_EQ(m->snapshot, std::optional<int64_t>(7));
  m = DecodeCommitMetadata(EncodeSnapshotPointer(9));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->log_end, 10);
  EXPECT_FALSE(DecodeCommitMetadata("someone else's"));
  EXPECT_FALSE(DecodeCommitMetadata("idem2 snapshot=3")) << "no log end";
  // A later release's field is ignored whatever its value; a repeated end counts at its highest.
  m = DecodeCommitMetadata("idem2 log=900 snapshot=800 claim=3:ab log=1");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->log_end, 900);
  EXPECT_EQ(m->snapshot, std::optional<int64_t>(800));
  // Offsets no log reaches do not decode (offset + 1 must not overflow).
  EXPECT_FALSE(DecodeCommitMetadata("idem1 snapshot=9223372036854775807"));
  EXPECT_FALSE(DecodeCommitMetadata("idem2 log=9223372036854775807"));
}

// A restore driven from outside: records fed one by one, a claim written and read back.
class PartitionRestoreDrivenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PartitionSetOptions o;
    o.maintenance_interval = absl::ZeroDuration();
    IDEM_ASSERT_OK_AND_ASSIGN(set_, PartitionSet::Open(o, dir_.path()));
  }
  static std::string Claim(ClaimId c) { return EncodeChangelogRecord(Rec(ChangelogRecord::Type::kClaim, c)); }
  static std::string Batch(ClaimId c, uint64_t seq, uint64_t previous, std::string key) {
    ChangelogRecord r = Rec(ChangelogRecord::Type::kBatch, c, seq, 1);
    r.previous_sequence = previous;
    r.ops = {ChangelogOp{ChangelogOp::Kind::kPut, 1, std::move(key), "v"}};
    return EncodeChangelogRecord(r);
  }
  ScratchDir dir_;
  std::unique_ptr<PartitionSet> set_;
};

TEST_F(PartitionRestoreDrivenTest, AClaimThatCountsOwnsThePartitionWithTheLogsState) {
  std::vector<std::string> log = {Claim({1, 5}), Batch({1, 5}, 10, 0, "a"), Batch({1, 5}, 11, 10, "b")};
  RestoreFacts f;
  f.log_end = static_cast<int64_t>(log.size());
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  IDEM_ASSERT_OK_AND_ASSIGN(auto restore, PartitionRestore::Begin(set_.get(), kLayout, plan));
  for (int64_t i = plan.read_from; i < plan.read_until; ++i) ASSERT_THAT(restore->Feed(i, log[i]), IsOk());
  const ChangelogRecord mine = restore->Claim();
  EXPECT_EQ(mine.claim.ordinal, 2u);
  EXPECT_THAT(restore->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition)) << "claimed, not confirmed";
  EXPECT_THAT(restore->Claimed(3), StatusIs(absl::StatusCode::kFailedPrecondition)) << "not read through it";
  ASSERT_THAT(restore->Feed(3, EncodeChangelogRecord(mine)), IsOk());
  ASSERT_THAT(restore->Claimed(3), IsOk());
  ASSERT_THAT(restore->Finish(), IsOk());
  EXPECT_EQ(restore->claim(), mine.claim);
  EXPECT_EQ(restore->claim_offset(), 3);
  IDEM_ASSERT_OK_AND_ASSIGN(ActivateOptions a, ActivateUnderClaim(restore->claim()));
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set_->Activate(kLayout, a));
  EXPECT_EQ(*p->Get(1, "a"), std::optional<std::string>("v"));
  EXPECT_EQ(*p->Get(1, "b"), std::optional<std::string>("v"));
}

TEST_F(PartitionRestoreDrivenTest, AClaimBeatenToItsOrdinalIsLostAndTheRestoreLeavesNothing) {
  RestoreFacts f;
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto restore, PartitionRestore::Begin(set_.get(), kLayout, plan));
    const ChangelogRecord mine = restore->Claim();
    // Another member's claim of the same ordinal reached the log first.
    ASSERT_THAT(restore->Feed(0, Claim({mine.claim.ordinal, mine.claim.claimant + 1})), IsOk());
    ASSERT_THAT(restore->Feed(1, EncodeChangelogRecord(mine)), IsOk());
    EXPECT_THAT(restore->Claimed(1), StatusIs(absl::StatusCode::kAborted));
    EXPECT_THAT(set_->Activate(kLayout, ActivateOptions{}).status(), StatusIs(absl::StatusCode::kFailedPrecondition))
        << "being restored";
  }
  EXPECT_TRUE(set_->LocalCopies().empty()) << "an abandoned restore drops its families";
  ActivateOptions use_copy;
  use_copy.use_local_copy = true;
  EXPECT_THAT(set_->Activate(kLayout, use_copy).status(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PartitionRestoreDrivenTest, AStaleCopyIsRefusedAndDropped) {
  // A copy kept under claim 1 at offset 0; then the log shows claim 2 while claim 1 still committed.
  {
    ActivateOptions first = *ActivateUnderClaim({1, 5});
    first.use_local_copy = false;  // nothing to use yet
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set_->Activate(kLayout, first));
    (void)p;
    ASSERT_THAT(set_->Deactivate(kLayout.name, KeepLocalCopy::kKeep, 0), IsOk());
  }
  std::vector<std::string> log = {Claim({1, 5}), Claim({2, 6}), Batch({1, 5}, 10, 0, "late")};
  RestoreFacts f;
  f.copy = set_->LocalCopies().at(0);
  f.log_end = static_cast<int64_t>(log.size());
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  ASSERT_EQ(plan.from, From::kLocalCopy);
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto restore, PartitionRestore::Begin(set_.get(), kLayout, plan));
    absl::Status fed;
    for (int64_t i = plan.read_from; i < plan.read_until && fed.ok(); ++i) fed = restore->Feed(i, log[i]);
    EXPECT_THAT(fed, StatusIs(absl::StatusCode::kAborted));
  }
  EXPECT_TRUE(set_->LocalCopies().empty());
  f.copy.reset();
  f.may_use_copy = false;
  EXPECT_EQ(PlanRestore(kLayout, f)->from, From::kLogStart);
}

TEST_F(PartitionRestoreDrivenTest, ACopyOfAnotherLogIsRefusedAtItsFirstRecord) {
  // A copy kept under claim 1 at offset 0 of a log that was then recreated: the new log holds another
  // owner's claim there, and more after it.
  {
    ActivateOptions first = *ActivateUnderClaim({1, 5});
    first.use_local_copy = false;
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set_->Activate(kLayout, first));
    (void)p;
    ASSERT_THAT(set_->Deactivate(kLayout.name, KeepLocalCopy::kKeep, 0), IsOk());
  }
  std::vector<std::string> log = {Claim({1, 9}), Batch({1, 9}, 10, 0, "theirs")};
  RestoreFacts f;
  f.copy = set_->LocalCopies().at(0);
  f.log_end = static_cast<int64_t>(log.size());
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  ASSERT_EQ(plan.from, From::kLocalCopy);
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto restore, PartitionRestore::Begin(set_.get(), kLayout, plan));
    EXPECT_THAT(restore->Feed(0, log[0]), StatusIs(absl::StatusCode::kAborted));
  }
  EXPECT_TRUE(set_->LocalCopies().empty()) << "the copy of another log is dropped";
}

TEST_F(PartitionRestoreDrivenTest, TheFirstErrorEndsTheRestore) {
  RestoreFacts f;
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  IDEM_ASSERT_OK_AND_ASSIGN(auto restore, PartitionRestore::Begin(set_.get(), kLayout, plan));
  ASSERT_THAT(restore->Feed(0, Claim({1, 5})), IsOk());
  EXPECT_THAT(restore->Feed(1, "not a record"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(restore->Feed(2, Batch({1, 5}, 10, 0, "a")), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(restore->Finish(), StatusIs(absl::StatusCode::kDataLoss)) << "never a clean copy after an error";
}

TEST_F(PartitionRestoreDrivenTest, NothingIsFedAfterTheClaimIsConfirmed) {
  RestoreFacts f;
  IDEM_ASSERT_OK_AND_ASSIGN(RestorePlan plan, PlanRestore(kLayout, f));
  IDEM_ASSERT_OK_AND_ASSIGN(auto restore, PartitionRestore::Begin(set_.get(), kLayout, plan));
  const ChangelogRecord mine = restore->Claim();
  ASSERT_THAT(restore->Feed(0, EncodeChangelogRecord(mine)), IsOk());
  ASSERT_THAT(restore->Claimed(0), IsOk());
  EXPECT_THAT(restore->Claimed(0), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(restore->Feed(1, Claim({mine.claim.ordinal + 1, 3})), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(restore->Finish(), IsOk());
  EXPECT_EQ(restore->claim(), mine.claim);
}

}  // namespace
}  // namespace idem
