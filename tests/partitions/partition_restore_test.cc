// A partition's state moves: the source store's commit hook feeds a changelog, a snapshot is cut while
// it runs, and a new owner restores into empty column families by SST ingestion plus the log's tail.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "idem/changelog.h"
#include "idem/partition_state.h"
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
using ::idem::testing::WaitFor;

class PartitionRestoreTest : public ::testing::TestWithParam<CompactionProfile> {
 protected:
  void SetUp() override {
    options_ = ManualOptions(clock_);
    options_.compaction = GetParam();
    if (GetParam() == CompactionProfile::kFifo) {
      options_.ttl = absl::Hours(1);
      options_.lease = absl::Seconds(30);
    }
    source_ = std::make_unique<testing::LedgerDb>(dir_.Sub("source"), ColumnFamilyOptionsFor(options_));
    ASSERT_TRUE(source_->status.ok());
    Options hooked = options_;
    hooked.effect_column_families = std::vector<uint32_t>{source_->ledger()->GetID()};
    hooked.commit_hook = [this](const CommittedWrite& w) {
      const uint32_t records = source_->idem()->GetID(), ledger = source_->ledger()->GetID();
      auto family_of = [&](uint32_t cf) -> std::optional<uint32_t> {
        if (cf == records) return 0;
        if (cf == ledger) return 1;
        return std::nullopt;
      };
      absl::StatusOr<std::vector<ChangelogOp>> ops = OpsOfBatch(*w.batch, family_of);
      ASSERT_TRUE(ops.ok()) << ops.status();
      ChangelogRecord batch;
      batch.type = ChangelogRecord::Type::kBatch;
      batch.claim = claim_;
      batch.sequence = w.sequence;
      batch.input_offset = next_input_;
      batch.ops = *std::move(ops);
      log_.push_back(EncodeChangelogRecord(batch));
      last_sequence_ = w.sequence;
    };
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Attach(source_->db.get(), source_->idem(), hooked));
    ChangelogRecord claim;
    claim.claim = claim_;
    log_.push_back(EncodeChangelogRecord(claim));
  }

  void CommitEvents(const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      const std::string id = prefix + std::to_string(i);
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve(id));
      ASSERT_EQ(r.verdict, Verdict::kReserved);
      rocksdb::WriteBatch effects;
      effects.Put(source_->ledger(), "acct-" + std::to_string(i % 13), id);
      ++next_input_;
      ASSERT_THAT(store_->Commit(id, r.token, "result-" + id, &effects), IsOk());
    }
  }

  ScratchDir dir_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  Options options_;
  std::unique_ptr<testing::LedgerDb> source_;
  std::unique_ptr<Store> store_;
  const ClaimId claim_{1, 0x5eed};
  std::vector<std::string> log_;
  uint64_t last_sequence_ = 0;
  int64_t next_input_ = 0;
};

TEST_P(PartitionRestoreTest, SnapshotPlusTailRestoresRecordsAndEffectsAndExpiryStillRemovesThem) {
  const absl::Duration half = options_.ttl / 2;
  CommitEvents("early-", 200);
  clock_->Advance(half);
  CommitEvents("late-", 200);
  clock_->Advance(half + absl::Seconds(1));  // the early ones have expired, the late ones not

  // The snapshot, cut as an owner cuts it: a RocksDB snapshot at the last hooked batch.
  const rocksdb::Snapshot* snapshot = source_->db->GetSnapshot();
  const int64_t pointer = static_cast<int64_t>(log_.size());
  ASSERT_THAT(WriteChangelogSnapshot(source_->db.get(), snapshot, {source_->idem(), source_->ledger()}, claim_,
                                     last_sequence_, next_input_, clock_->Now(), 4096,
                                     [&](const ChangelogRecord& r) {
                                       log_.push_back(EncodeChangelogRecord(r));
                                       return absl::OkStatus();
                                     }),
              IsOk());
  source_->db->ReleaseSnapshot(snapshot);
  CommitEvents("tail-", 50);  // after the snapshot: only in the log's tail

  testing::LedgerDb replica(dir_.Sub("replica"), ColumnFamilyOptionsFor(options_));
  ASSERT_TRUE(replica.status.ok());
  ChangelogRestore::Target target;
  target.db = replica.db.get();
  target.families = {replica.idem(), replica.ledger()};
  target.store_options = options_;
  target.scratch_dir = dir_.Sub("scratch");
  IDEM_ASSERT_OK_AND_ASSIGN(auto restore, ChangelogRestore::Create(target));
  ASSERT_THAT(CheckReplayable(pointer, 0), IsOk());
  ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, restore.get());
  for (int64_t offset = pointer; offset < static_cast<int64_t>(log_.size()); ++offset) {
    ASSERT_THAT(replayer.Feed(offset, log_[offset]), IsOk());
  }
  ASSERT_THAT(replayer.Finish(), IsOk());
  EXPECT_EQ(replayer.batches_applied(), 50u);
  EXPECT_EQ(restore->batches_written(), 50u);
  EXPECT_EQ(restore->entries_restored(), 200u + 13u);  // the late markers and the ledger
  // Expired at the source already: the snapshot left them out.
  EXPECT_EQ(restore->expired_skipped(), 0u);
  EXPECT_EQ(restore->files_ingested(), GetParam() == CompactionProfile::kFifo ? 0u : 2u);

  EXPECT_EQ(ColumnFamilyContents(replica.db.get(), replica.ledger()),
            ColumnFamilyContents(source_->db.get(), source_->ledger()));
  Options owner_options = options_;
  owner_options.token_floor = uint64_t{2} << 40;
  owner_options.maintenance_interval = absl::Milliseconds(10);
  IDEM_ASSERT_OK_AND_ASSIGN(auto owner, Store::Attach(replica.db.get(), replica.idem(), owner_options));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation late, owner->Reserve("late-7"));
  EXPECT_EQ(late.verdict, Verdict::kDuplicate);
  EXPECT_EQ(late.result, "result-late-7");
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation tail, owner->Reserve("tail-49"));
  EXPECT_EQ(tail.verdict, Verdict::kDuplicate);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation early, owner->Reserve("early-3"));
  EXPECT_EQ(early.verdict, Verdict::kReserved);  // expired before the move: new again, as at the source
  EXPECT_GT(early.token, owner_options.token_floor);

  // Ingested files carry creation time 0; their deadline properties still get them compacted away by
  // the background maintenance once every record in them has expired.
  clock_->Advance(half + absl::Seconds(1));
  if (GetParam() != CompactionProfile::kFifo) {
    EXPECT_TRUE(WaitFor([&] { return owner->GetStats().expired_removed >= 200; }))
        << "removed " << owner->GetStats().expired_removed;
  }
  ASSERT_THAT(owner->CompactExpired(), IsOk());
  // (FIFO drops whole files by their real age, which a fake clock does not move.)
  if (GetParam() != CompactionProfile::kFifo) {
    EXPECT_THAT(owner->Peek("late-7"), StatusIs(absl::StatusCode::kNotFound));
  }
}

INSTANTIATE_TEST_SUITE_P(Profiles, PartitionRestoreTest,
                         ::testing::Values(CompactionProfile::kLeveled, CompactionProfile::kUniversal,
                                           CompactionProfile::kFifo));

TEST(PartitionRestoreCreateTest, ATargetThatIsNotEmptyIsRefused) {
  ScratchDir dir;
  Options options = ManualOptions();
  testing::LedgerDb db(dir.Sub("db"), ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(db.status.ok());
  ASSERT_TRUE(db.db->Put(rocksdb::WriteOptions(), db.ledger(), "k", "v").ok());
  ChangelogRestore::Target target;
  target.db = db.db.get();
  target.families = {db.idem(), db.ledger()};
  target.scratch_dir = dir.Sub("scratch");
  EXPECT_THAT(ChangelogRestore::Create(target), StatusIs(absl::StatusCode::kFailedPrecondition));
  target.families.clear();
  EXPECT_THAT(ChangelogRestore::Create(target), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace idem
