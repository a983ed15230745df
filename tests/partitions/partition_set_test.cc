// PartitionSet: many partition stores in one process on one RocksDB — activation, local copies, the
// ownership floor, the allow-list across partitions, the commit hook as a changelog, restore by
// ingestion, shared threads.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/records/record.h"
#include "idem/changelog.h"
#include "idem/partition_set.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "testing/fault_fs.h"
#include "tests/support/child_process.h"
#include "tests/support/db_contents.h"
#include "tests/support/test_util.h"
#include "tools/simulated_time.h"

namespace idem {
namespace {

using ::idem::testing::ColumnFamilyContents;
using ::idem::testing::FakeClock;
using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;
using ::idem::testing::WaitFor;

size_t ThreadCount() {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)entry;
    ++n;
  }
  return n;
}

// How many partitions the many-partition tests use: 64 (the figure), fewer when
// IDEM_TEST_PARTITIONS says so (the ThreadSanitizer run, where each costs ten times as much). A multiple
// of 4.
int ManyPartitions() {
  const char* v = std::getenv("IDEM_TEST_PARTITIONS");
  const int n = v != nullptr ? std::atoi(v) : 64;
  return n >= 8 ? n - n % 4 : 64;
}

PartitionLayout LayoutOf(int i) { return PartitionLayout{"orders/" + std::to_string(i), {"ledger"}}; }

class PartitionSetTest : public ::testing::Test {
 public:
  // Reserves and commits `id` in `p` with a ledger effect.
  static absl::Status CommitOne(Partition* p, const std::string& id, const std::string& value = "v") {
    absl::StatusOr<Reservation> r = p->store().Reserve(id);
    if (!r.ok()) return r.status();
    if (r->verdict != Verdict::kReserved) return absl::AlreadyExistsError(VerdictName(r->verdict).data());
    rocksdb::WriteBatch effects;
    effects.Put(p->family(1), "last", id + "=" + value);
    return p->store().Commit(id, r->token, "done-" + id, &effects);
  }

 protected:
  PartitionSetOptions SetOptions() {
    PartitionSetOptions options;
    options.store.clock = clock_;
    options.maintenance_interval = absl::Milliseconds(20);
    return options;
  }

  absl::StatusOr<std::unique_ptr<PartitionSet>> OpenSet() { return PartitionSet::Open(SetOptions(), dir_.Sub("set")); }

  ScratchDir dir_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
};

TEST_F(PartitionSetTest, SixtyFourPartitionsActivateDeactivateAndComeBackAsLocalCopies) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * first, set->Activate(LayoutOf(0), ActivateOptions{}));
  ASSERT_THAT(CommitOne(first, "evt"), IsOk());
  const size_t threads_with_one = ThreadCount();
  const int n = ManyPartitions();
  for (int i = 1; i < n; ++i) {
    ActivateOptions activate;
    activate.claim = ClaimId{1, static_cast<uint64_t>(i)};
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(LayoutOf(i), activate));
    ASSERT_THAT(CommitOne(p, "evt"), IsOk());  // the same ID in every partition: each its own
    ASSERT_THAT(CommitOne(p, "evt-" + std::to_string(i)), IsOk());
  }
  // No thread per partition: maintenance, disk watching and recovery are the set's.
  EXPECT_LE(ThreadCount(), threads_with_one + 1) << "threads grew with partitions";
  EXPECT_EQ(set->ActiveNames().size(), static_cast<size_t>(n));
  EXPECT_THAT(set->Activate(LayoutOf(3), ActivateOptions{}), StatusIs(absl::StatusCode::kFailedPrecondition));

  for (int i = 0; i < n; i += 2) ASSERT_THAT(set->Deactivate(LayoutOf(i).name, KeepLocalCopy::kKeep, 100 + i), IsOk());
  for (int i = 1; i < n; i += 4) ASSERT_THAT(set->Deactivate(LayoutOf(i).name, KeepLocalCopy::kDrop), IsOk());
  EXPECT_EQ(set->Find(LayoutOf(0).name), nullptr);
  EXPECT_THAT(set->Deactivate("never", KeepLocalCopy::kKeep), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(set->LocalCopies().size(), static_cast<size_t>(n / 2));
  ASSERT_THAT(set->Close(), IsOk());  // the quarter still active stay, unclean: not deactivated

  IDEM_ASSERT_OK_AND_ASSIGN(set, OpenSet());
  std::map<std::string, LocalCopy> copies;
  for (LocalCopy& c : set->LocalCopies()) copies[c.layout.name] = c;
  EXPECT_EQ(copies.size(), static_cast<size_t>(3 * n / 4));
  for (int i = 0; i < n; ++i) {
    const bool dropped = i % 4 == 1;
    ASSERT_EQ(copies.count(LayoutOf(i).name), dropped ? 0u : 1u) << i;
    if (dropped) continue;
    const LocalCopy& c = copies[LayoutOf(i).name];
    EXPECT_EQ(c.clean, i % 2 == 0) << i;  // deactivated with kKeep; the odd ones were active at Close
    EXPECT_EQ(c.layout.effect_families, std::vector<std::string>{"ledger"});
    if (i % 2 == 0) {
      EXPECT_EQ(c.changelog_offset, 100 + i);
      if (i > 0) {
        EXPECT_EQ(c.claim, (ClaimId{1, static_cast<uint64_t>(i)}));
      }
    }
  }
  // A clean copy, reused: its commits are duplicates, its effects there.
  ActivateOptions reuse;
  reuse.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * two, set->Activate(LayoutOf(2), reuse));
  EXPECT_EQ(two->store().Reserve("evt-2")->verdict, Verdict::kDuplicate);
  std::string value;
  ASSERT_TRUE(set->db()->Get(rocksdb::ReadOptions(), two->family(1), "last", &value).ok());
  EXPECT_EQ(value, "evt-2=v");
  // Not reused: the copy is dropped and the partition starts empty.
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * four, set->Activate(LayoutOf(4), ActivateOptions{}));
  EXPECT_EQ(four->store().Reserve("evt-4")->verdict, Verdict::kReserved);
  EXPECT_EQ(set->GetStats().local_copies_dropped, 1u);
  // A dropped one has no copy to reuse.
  EXPECT_THAT(set->Activate(LayoutOf(1), reuse), StatusIs(absl::StatusCode::kFailedPrecondition));
  // Other families than its copy's: refused.
  EXPECT_THAT(set->Activate(PartitionLayout{LayoutOf(6).name, {"ledger", "audit"}}, reuse),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(set->DropLocalCopy(LayoutOf(6).name), IsOk());
  EXPECT_THAT(set->DropLocalCopy(LayoutOf(6).name), StatusIs(absl::StatusCode::kNotFound));
}

// The families of the set's DB, by name.
std::vector<std::string> Families(const std::string& path) {
  std::vector<std::string> names;
  rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).PermitUncheckedError();
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(PartitionSetTest, PreparedFamiliesAreUsedByActivateAndDroppedAtOpenWhenUnused) {
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * kept, set->Activate(LayoutOf(0), ActivateOptions{}));
    ASSERT_THAT(CommitOne(kept, "a"), IsOk());
    ASSERT_THAT(set->Deactivate(LayoutOf(0).name, KeepLocalCopy::kKeep), IsOk());
    // A bad layout anywhere: nothing is made.
    EXPECT_THAT(set->PrepareFamilies({LayoutOf(1), PartitionLayout{"a//b", {}}}),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(Families(dir_.Sub("set")), (std::vector<std::string>{"default", "p:orders/0:0", "p:orders/0:1:ledger"}));
    // The copy's partition is left alone; the others get their families.
    ASSERT_THAT(set->PrepareFamilies({LayoutOf(0), LayoutOf(1), LayoutOf(2), LayoutOf(1)}), IsOk());
    EXPECT_EQ(Families(dir_.Sub("set")),
              (std::vector<std::string>{"default", "p:orders/0:0", "p:orders/0:1:ledger", "p:orders/1:0",
                                        "p:orders/1:1:ledger", "p:orders/2:0", "p:orders/2:1:ledger"}));
    EXPECT_EQ(set->LocalCopies().size(), 1u) << "a prepared partition is no local copy";
    // Activate uses the prepared families: the partition works, and nothing more is made.
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * one, set->Activate(LayoutOf(1), ActivateOptions{}));
    ASSERT_THAT(CommitOne(one, "b"), IsOk());
    EXPECT_EQ(Families(dir_.Sub("set")).size(), 7u);
    ASSERT_THAT(set->PrepareFamilies({LayoutOf(1)}), IsOk()) << "an active partition is left alone";
    ASSERT_THAT(set->Close(), IsOk());
  }
  // Reopened: orders/2 was prepared and never used, so its families go; the copy and the partition that
  // was active (now an unclean copy) stay, with their data.
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  EXPECT_EQ(Families(dir_.Sub("set")), (std::vector<std::string>{"default", "p:orders/0:0", "p:orders/0:1:ledger",
                                                                 "p:orders/1:0", "p:orders/1:1:ledger"}));
  ActivateOptions copy;
  copy.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * zero, set->Activate(LayoutOf(0), copy));
  EXPECT_EQ(zero->store().Reserve("a")->verdict, Verdict::kDuplicate);
  // orders/1 was active when the set closed: an unclean copy noting no claim, which nothing can use.
  // Preparing it drops it and makes fresh families; Activate then starts empty.
  const uint64_t dropped = set->GetStats().local_copies_dropped;
  ASSERT_THAT(set->PrepareFamilies({LayoutOf(1)}), IsOk());
  EXPECT_EQ(set->GetStats().local_copies_dropped, dropped + 1);
  for (const LocalCopy& c : set->LocalCopies()) EXPECT_NE(c.layout.name, LayoutOf(1).name);
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * one, set->Activate(LayoutOf(1), ActivateOptions{}));
  EXPECT_EQ(one->store().Reserve("b")->verdict, Verdict::kReserved);
  ASSERT_THAT(set->Close(), IsOk());
  EXPECT_THAT(set->PrepareFamilies({LayoutOf(3)}), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PartitionSetTest, BadLayoutsAreRefused) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  for (const PartitionLayout& bad :
       {PartitionLayout{"", {}}, PartitionLayout{"a:b", {}}, PartitionLayout{std::string("a\nb"), {}},
        PartitionLayout{"p", {"x", "x"}}, PartitionLayout{"p", {""}}}) {
    EXPECT_THAT(set->Activate(bad, ActivateOptions{}), StatusIs(absl::StatusCode::kInvalidArgument)) << bad.name;
  }
}

// Names are '/'-separated parts, none empty, "." or "..": what partition_set.h promises. Restore and
// CatchUp check names as Activate does, before anything is created.
TEST_F(PartitionSetTest, NamesWithEmptyOrDotPartsAreRefusedEverywhere) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  for (const char* bad : {"/", "//", "a//b", "/a", "a/", ".", "..", "a/./b", "a/../b", "x\x7f"}) {
    const PartitionLayout layout{bad, {"ledger"}};
    EXPECT_THAT(set->Activate(layout, ActivateOptions{}), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
    bool fed = false;
    auto feed = [&](ChangelogReplayer::Sink*) {
      fed = true;
      return absl::OkStatus();
    };
    EXPECT_THAT(set->Restore(layout, feed), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
    EXPECT_THAT(set->CatchUp(layout, feed), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
    EXPECT_FALSE(fed) << bad;
  }
  EXPECT_TRUE(set->LocalCopies().empty());
  for (const char* good : {"orders/7", "a/b/c", "a.b", "...", "-"}) {
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(PartitionLayout{good, {}}, ActivateOptions{}));
    EXPECT_EQ(p->layout().name, good);
  }
}

// Restore's and CatchUp's codes, as the header lists them.
TEST_F(PartitionSetTest, RestoreAndCatchUpReturnTheCodesTheHeaderLists) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  auto nothing = [](ChangelogReplayer::Sink*) { return absl::OkStatus(); };
  // No local copy at all: CatchUp has nothing to bring up to date.
  EXPECT_THAT(set->CatchUp(LayoutOf(1), nothing), StatusIs(absl::StatusCode::kFailedPrecondition));
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(LayoutOf(1), ActivateOptions{}));
  (void)p;
  EXPECT_THAT(set->Restore(LayoutOf(1), nothing), StatusIs(absl::StatusCode::kFailedPrecondition));  // active
  EXPECT_THAT(set->CatchUp(LayoutOf(1), nothing), StatusIs(absl::StatusCode::kFailedPrecondition));
  // The feed's own error is returned as it is, and the families are dropped.
  EXPECT_THAT(set->Restore(LayoutOf(2), [](ChangelogReplayer::Sink*) { return absl::DataLossError("bad log"); }),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(set->DropLocalCopy(LayoutOf(2).name), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(set->Close(), IsOk());
  EXPECT_THAT(set->Restore(LayoutOf(3), nothing), StatusIs(absl::StatusCode::kFailedPrecondition));  // closed
}

// The process is killed with a partition active: its copy is unclean, never reused.
TEST_F(PartitionSetTest, ACopyActiveWhenTheProcessWasKilledIsUnclean) {
  {
    testing::Child worker({IDEM_PARTITION_WORKER, dir_.Sub("set")});
    ASSERT_TRUE(worker.running());
    ASSERT_TRUE(worker.ReadUntilOutput("ready", absl::Seconds(30))) << worker.output();
    worker.Kill();
  }
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  std::vector<LocalCopy> copies = set->LocalCopies();
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_FALSE(copies[0].clean);
  ActivateOptions reuse;
  reuse.use_local_copy = true;
  EXPECT_THAT(set->Activate(LayoutOf(1), reuse), StatusIs(absl::StatusCode::kFailedPrecondition));
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(LayoutOf(1), ActivateOptions{}));
  EXPECT_EQ(p->store().Reserve("evt")->verdict, Verdict::kReserved);
  EXPECT_EQ(set->GetStats().local_copies_dropped, 1u);
}

TEST_F(PartitionSetTest, TheOwnershipFloorFencesAZombiesCommit) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  ActivateOptions first;
  first.token_floor = uint64_t{1} << 40;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(LayoutOf(7), first));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation zombie, p->store().Reserve("evt"));
  ASSERT_THAT(set->Deactivate(LayoutOf(7).name, KeepLocalCopy::kKeep), IsOk());
  ActivateOptions second;
  second.token_floor = uint64_t{2} << 40;
  second.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * q, set->Activate(LayoutOf(7), second));
  rocksdb::WriteBatch effects;
  effects.Put(q->family(1), "acct", "zombie");
  EXPECT_THAT(q->store().Commit("evt", zombie.token, "", &effects), StatusIs(absl::StatusCode::kAborted));
  std::string value;
  EXPECT_TRUE(set->db()->Get(rocksdb::ReadOptions(), q->family(1), "acct", &value).IsNotFound());
  EXPECT_EQ(set->GetStats().fenced, 1u);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation mine, q->store().Reserve("evt"));
  EXPECT_GT(mine.token, second.token_floor);
  EXPECT_THAT(set->ToPrometheus(), ::testing::HasSubstr("idem_fenced_total{partition=\"orders/7\"} 1"));
  EXPECT_THAT(set->ToPrometheus(), ::testing::HasSubstr("idem_partition_set_fenced_total 1"));
}

// A claim's token range: floors grow with the ordinal up to the last claim the 64-bit space holds, and
// past it the helper refuses instead of wrapping (ordinal 2^24 << 40 is 0: below every zombie's token).
TEST(TokenRangeTest, ClaimsGetGrowingRangesAndTheShiftNeverWraps) {
  IDEM_ASSERT_OK_AND_ASSIGN(TokenRange first, TokenRangeOfClaim(0));
  EXPECT_EQ(first.floor, 0u);
  EXPECT_EQ(first.limit, uint64_t{1} << 40);
  IDEM_ASSERT_OK_AND_ASSIGN(TokenRange one, TokenRangeOfClaim(1));
  EXPECT_EQ(one.floor, uint64_t{1} << 40);
  EXPECT_EQ(one.limit, uint64_t{2} << 40);
  uint64_t previous_limit = 0;
  for (uint64_t ordinal = kMaxClaimOrdinal - 3; ordinal <= kMaxClaimOrdinal; ++ordinal) {
    IDEM_ASSERT_OK_AND_ASSIGN(TokenRange range, TokenRangeOfClaim(ordinal));
    if (previous_limit != 0) {
      EXPECT_EQ(range.floor, previous_limit) << ordinal;
    }
    EXPECT_GT(range.floor, (kMaxClaimOrdinal - 4) << 40) << ordinal;
    if (ordinal < kMaxClaimOrdinal) {
      EXPECT_GT(range.limit, range.floor + 1) << ordinal;
    }
    previous_limit = range.limit;
  }
  EXPECT_EQ(TokenRangeOfClaim(kMaxClaimOrdinal)->limit, 0u) << "the last claim: no successor to stay below";
  for (uint64_t past : {kMaxClaimOrdinal + 1, kMaxClaimOrdinal + 2, ~uint64_t{0}}) {
    EXPECT_THAT(TokenRangeOfClaim(past), StatusIs(absl::StatusCode::kFailedPrecondition)) << past;
  }
}

// A floor/limit pair that leaves no token is refused before Activate changes anything: the clean local
// copy it would have dropped is still there.
TEST_F(PartitionSetTest, ATokenRangeThatDoesNotGrowIsRefusedBeforeAnythingChanges) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(LayoutOf(1), ActivateOptions{}));
  ASSERT_THAT(CommitOne(p, "evt"), IsOk());
  ASSERT_THAT(set->Deactivate(LayoutOf(1).name, KeepLocalCopy::kKeep, 7), IsOk());
  for (const auto& [floor, limit] : std::vector<std::pair<uint64_t, uint64_t>>{
           {uint64_t{2} << 40, uint64_t{2} << 40}, {uint64_t{3} << 40, uint64_t{2} << 40}, {5, 6}}) {
    ActivateOptions bad;
    bad.token_floor = floor;
    bad.token_limit = limit;
    absl::StatusOr<Partition*> refused = set->Activate(LayoutOf(1), bad);
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument)) << floor << " " << limit;
    EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("token_limit"));
  }
  ASSERT_EQ(set->LocalCopies().size(), 1u);
  EXPECT_TRUE(set->LocalCopies()[0].clean);
  ActivateOptions reuse;
  reuse.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(p, set->Activate(LayoutOf(1), reuse));
  EXPECT_EQ(p->store().Reserve("evt")->verdict, Verdict::kDuplicate);
}

TEST_F(PartitionSetTest, EffectsMayWriteOnlyTheirOwnPartitionsFamilies) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * a, set->Activate(LayoutOf(1), ActivateOptions{}));
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * b, set->Activate(LayoutOf(2), ActivateOptions{}));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, a->store().Reserve("evt"));
  for (rocksdb::ColumnFamilyHandle* foreign : {b->family(1), b->family(0), set->db()->DefaultColumnFamily()}) {
    rocksdb::WriteBatch effects;
    effects.Put(a->family(1), "mine", "1");
    effects.Put(foreign, "theirs", "1");
    EXPECT_THAT(a->store().Commit("evt", r.token, "", &effects), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_TRUE(ColumnFamilyContents(set->db(), a->family(1)).empty());
  EXPECT_TRUE(ColumnFamilyContents(set->db(), b->family(1)).empty());
  ASSERT_THAT(CommitOne(b, "other"), IsOk());
}

// The hook's batches are a partition's changelog: restored into another set, with a snapshot cut while
// commits go on, they give the same records and effects.
TEST_F(PartitionSetTest, ChangelogFromTheHookRestoresIntoAnotherSet) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto source, OpenSet());
  const ClaimId claim{3, 0xabc};
  std::mutex mu;
  std::vector<std::string> log;
  log.push_back(EncodeChangelogRecord([&] {
    ChangelogRecord r;
    r.claim = claim;
    return r;
  }()));
  ActivateOptions activate;
  activate.claim = claim;
  activate.token_floor = claim.ordinal << 40;
  activate.commit_hook = [&](const PartitionCommit& c) {
    ChangelogRecord batch;
    batch.type = ChangelogRecord::Type::kBatch;
    batch.claim = claim;
    batch.sequence = c.sequence;
    batch.ops = *c.ops;
    std::lock_guard<std::mutex> lock(mu);
    log.push_back(EncodeChangelogRecord(batch));
  };
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, source->Activate(LayoutOf(5), activate));
  for (int i = 0; i < 300; ++i) ASSERT_THAT(CommitOne(p, "pre-" + std::to_string(i), std::to_string(i)), IsOk());

  // Commits from two threads while the snapshot is cut and streamed (a bounded number: under a
  // sanitizer the snapshot is slow, and the log it must be checked against should not grow with it).
  std::atomic<int> started{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        ASSERT_THAT(CommitOne(p, "during-" + std::to_string(t) + "-" + std::to_string(i)), IsOk());
        started.fetch_add(1);
      }
    });
  }
  while (started.load() < 20) std::this_thread::yield();
  int64_t pointer = -1;
  ASSERT_THAT(p->WriteSnapshot(claim, -1, 1024,
                               [&](const ChangelogRecord& r) {
                                 std::lock_guard<std::mutex> lock(mu);
                                 if (r.type == ChangelogRecord::Type::kSnapshotBegin) {
                                   pointer = static_cast<int64_t>(log.size());
                                 }
                                 log.push_back(EncodeChangelogRecord(r));
                                 return absl::OkStatus();
                               }),
              IsOk());
  for (auto& w : writers) w.join();
  ASSERT_GE(pointer, 0);

  ScratchDir other;
  IDEM_ASSERT_OK_AND_ASSIGN(auto target, PartitionSet::Open(SetOptions(), other.Sub("set")));
  ASSERT_THAT(target->Restore(LayoutOf(5),
                              [&](ChangelogReplayer::Sink* sink) {
                                ChangelogReplayer replayer(ChangelogReplayer::Start::kSnapshot, sink);
                                for (int64_t o = pointer; o < static_cast<int64_t>(log.size()); ++o) {
                                  if (absl::Status s = replayer.Feed(o, log[o]); !s.ok()) return s;
                                }
                                return replayer.Finish();
                              }),
              IsOk());
  EXPECT_EQ(target->GetStats().restores, 1u);
  EXPECT_GT(target->GetStats().records_restored, 300u);
  ActivateOptions next;
  next.use_local_copy = true;
  next.token_floor = uint64_t{4} << 40;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * q, target->Activate(LayoutOf(5), next));
  EXPECT_EQ(ColumnFamilyContents(target->db(), q->family(1)), ColumnFamilyContents(source->db(), p->family(1)));
  EXPECT_EQ(ColumnFamilyContents(target->db(), q->family(0)), ColumnFamilyContents(source->db(), p->family(0)));
  EXPECT_EQ(q->store().Reserve("pre-17")->verdict, Verdict::kDuplicate);
  EXPECT_EQ(q->store().Reserve("during-1-3")->verdict, Verdict::kDuplicate);
  EXPECT_EQ(q->store().Reserve("never")->verdict, Verdict::kReserved);

  // A restore that fails leaves nothing behind.
  EXPECT_THAT(target->Restore(LayoutOf(9), [](ChangelogReplayer::Sink*) { return absl::DataLossError("cut"); }),
              StatusIs(absl::StatusCode::kDataLoss));
  for (const LocalCopy& c : target->LocalCopies()) EXPECT_NE(c.layout.name, LayoutOf(9).name);
}

// A clean local copy catches up with the log's tail a later owner wrote, instead of a full restore; a
// copy whose owner committed after a newer claim is stale, and is dropped.
TEST_F(PartitionSetTest, ACleanCopyCatchesUpWithTheTailAndAStaleOneIsDropped) {
  std::vector<std::string> log;
  auto hook_for = [&log](ClaimId claim) {
    return [&log, claim](const PartitionCommit& c) {
      ChangelogRecord batch;
      batch.type = ChangelogRecord::Type::kBatch;
      batch.claim = claim;
      batch.sequence = c.sequence;
      batch.ops = *c.ops;
      log.push_back(EncodeChangelogRecord(batch));
    };
  };
  auto claim_record = [](ClaimId claim) {
    ChangelogRecord r;
    r.claim = claim;
    return EncodeChangelogRecord(r);
  };
  auto feed_from = [&log](ClaimId copy_claim, int64_t from) {
    return [&log, copy_claim, from](ChangelogReplayer::Sink* sink) {
      ChangelogReplayer replayer(copy_claim, sink);
      for (int64_t o = from; o < static_cast<int64_t>(log.size()); ++o) {
        if (absl::Status s = replayer.Feed(o, log[o]); !s.ok()) return s;
      }
      return replayer.Finish();
    };
  };
  const ClaimId first{1, 10}, second{2, 20}, third{3, 30};
  IDEM_ASSERT_OK_AND_ASSIGN(auto mine, OpenSet());
  ScratchDir other_dir;
  IDEM_ASSERT_OK_AND_ASSIGN(auto other, PartitionSet::Open(SetOptions(), other_dir.Sub("set")));

  // Owner 1 (this set) commits, then leaves a clean copy noting its claim's offset.
  log.push_back(claim_record(first));
  ActivateOptions a;
  a.claim = first;
  a.commit_hook = hook_for(first);
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, mine->Activate(LayoutOf(1), a));
  ASSERT_THAT(CommitOne(p, "e1", "1"), IsOk());
  ASSERT_THAT(CommitOne(p, "e2", "2"), IsOk());
  ASSERT_THAT(mine->Deactivate(LayoutOf(1).name, KeepLocalCopy::kKeep, 0), IsOk());

  // Owner 2 (another set) restores from the log's start, claims, commits.
  ASSERT_THAT(other->Restore(LayoutOf(1),
                             [&](ChangelogReplayer::Sink* sink) {
                               ChangelogReplayer replayer(ChangelogReplayer::Start::kLogStart, sink);
                               for (int64_t o = 0; o < static_cast<int64_t>(log.size()); ++o) {
                                 if (absl::Status s = replayer.Feed(o, log[o]); !s.ok()) return s;
                               }
                               return replayer.Finish();
                             }),
              IsOk());
  log.push_back(claim_record(second));
  ActivateOptions b;
  b.claim = second;
  b.use_local_copy = true;
  b.commit_hook = hook_for(second);
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * q, other->Activate(LayoutOf(1), b));
  ASSERT_THAT(CommitOne(q, "e3", "3"), IsOk());
  ASSERT_THAT(other->Deactivate(LayoutOf(1).name, KeepLocalCopy::kKeep, 3), IsOk());

  // Back to this set: its copy catches up from its claim and holds all three.
  ASSERT_THAT(mine->CatchUp(LayoutOf(1), feed_from(first, 0)), IsOk());
  EXPECT_EQ(mine->GetStats().catch_ups, 1u);
  ActivateOptions c;
  c.claim = third;
  c.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * r, mine->Activate(LayoutOf(1), c));
  for (const char* id : {"e1", "e2", "e3"}) EXPECT_EQ(r->store().Reserve(id)->verdict, Verdict::kDuplicate) << id;
  EXPECT_EQ(ColumnFamilyContents(mine->db(), r->family(1)), (std::map<std::string, std::string>{{"last", "e3=3"}}));

  // Owner 2's copy is stale once it commits after owner 3's claim (a zombie): dropped, not reused.
  ASSERT_THAT(mine->Deactivate(LayoutOf(1).name, KeepLocalCopy::kDrop), IsOk());
  log.push_back(claim_record(third));
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * z, other->Activate(LayoutOf(1), [&] {
    ActivateOptions zombie = b;  // the old claim, as a zombie still holds it
    return zombie;
  }()));
  ASSERT_THAT(CommitOne(z, "e4-zombie"), IsOk());
  ASSERT_THAT(other->Deactivate(LayoutOf(1).name, KeepLocalCopy::kKeep, 3), IsOk());
  EXPECT_THAT(other->CatchUp(LayoutOf(1), feed_from(second, 3)), StatusIs(absl::StatusCode::kAborted));
  for (const LocalCopy& copy : other->LocalCopies()) EXPECT_NE(copy.layout.name, LayoutOf(1).name);
  EXPECT_THAT(other->CatchUp(LayoutOf(1), feed_from(second, 3)), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// While a partition is being restored, it can be neither activated nor dropped (its families are the
// restore's).
TEST_F(PartitionSetTest, APartitionBeingRestoredCannotBeActivatedOrDropped) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  ASSERT_THAT(set->Restore(LayoutOf(3),
                           [&](ChangelogReplayer::Sink*) {
                             EXPECT_THAT(set->Activate(LayoutOf(3), ActivateOptions{}),
                                         StatusIs(absl::StatusCode::kFailedPrecondition));
                             EXPECT_THAT(set->DropLocalCopy(LayoutOf(3).name),
                                         StatusIs(absl::StatusCode::kFailedPrecondition));
                             return absl::OkStatus();
                           }),
              IsOk());
  ActivateOptions reuse;
  reuse.use_local_copy = true;
  EXPECT_THAT(set->Activate(LayoutOf(3), reuse), IsOk());
}

TEST_F(PartitionSetTest, TheSetsMaintenanceThreadExpiresEveryPartition) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  std::vector<Partition*> partitions;
  for (int i = 0; i < 8; ++i) {
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(LayoutOf(i), ActivateOptions{}));
    for (int k = 0; k < 20; ++k) ASSERT_THAT(CommitOne(p, "e" + std::to_string(k)), IsOk());
    partitions.push_back(p);
  }
  clock_->Advance(absl::Hours(25));
  for (Partition* p : partitions) {
    EXPECT_TRUE(WaitFor([&] { return p->store().GetStats().expired_removed >= 20; }))
        << p->layout().name << " removed " << p->store().GetStats().expired_removed;
  }
}

// 64 partitions, each with its own changelog, restored into a fresh set: every partition's commits and
// effects come back, and only its own.
TEST_F(PartitionSetTest, SixtyFourPartitionsRestoreFromTheirChangelogs) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto source, OpenSet());
  const int kPartitions = ManyPartitions();
  std::vector<std::vector<std::string>> logs(kPartitions);
  std::vector<Partition*> partitions;
  for (int i = 0; i < kPartitions; ++i) {
    const ClaimId claim{1, static_cast<uint64_t>(1000 + i)};
    ChangelogRecord c;
    c.claim = claim;
    logs[i].push_back(EncodeChangelogRecord(c));
    ActivateOptions activate;
    activate.claim = claim;
    activate.commit_hook = [&logs, i, claim](const PartitionCommit& commit) {
      ChangelogRecord batch;
      batch.type = ChangelogRecord::Type::kBatch;
      batch.claim = claim;
      batch.sequence = commit.sequence;
      batch.ops = *commit.ops;
      logs[i].push_back(EncodeChangelogRecord(batch));
    };
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, source->Activate(LayoutOf(i), activate));
    for (int k = 0; k < 10; ++k) {
      ASSERT_THAT(CommitOne(p, "evt-" + std::to_string(i) + "-" + std::to_string(k), std::to_string(i)), IsOk());
    }
    partitions.push_back(p);
  }
  ScratchDir other;
  IDEM_ASSERT_OK_AND_ASSIGN(auto target, PartitionSet::Open(SetOptions(), other.Sub("set")));
  for (int i = 0; i < kPartitions; ++i) {
    ASSERT_THAT(target->Restore(LayoutOf(i),
                                [&](ChangelogReplayer::Sink* sink) {
                                  ChangelogReplayer replayer(ChangelogReplayer::Start::kLogStart, sink);
                                  for (size_t o = 0; o < logs[i].size(); ++o) {
                                    if (absl::Status s = replayer.Feed(static_cast<int64_t>(o), logs[i][o]); !s.ok()) {
                                      return s;
                                    }
                                  }
                                  return replayer.Finish();
                                }),
                IsOk());
  }
  EXPECT_EQ(target->GetStats().restores, static_cast<uint64_t>(kPartitions));
  ActivateOptions reuse;
  reuse.use_local_copy = true;
  for (int i = 0; i < kPartitions; ++i) {
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * q, target->Activate(LayoutOf(i), reuse));
    EXPECT_EQ(ColumnFamilyContents(target->db(), q->family(1)),
              ColumnFamilyContents(source->db(), partitions[i]->family(1)))
        << i;
    EXPECT_EQ(q->store().Reserve("evt-" + std::to_string(i) + "-9")->verdict, Verdict::kDuplicate);
    // Another partition's ID is new here.
    EXPECT_EQ(q->store().Reserve("evt-" + std::to_string((i + 1) % kPartitions) + "-9")->verdict, Verdict::kReserved);
  }
}

// A failed WAL write in one partition: the set's one DB is unhealthy for every partition (one
// listener). RocksDB cannot resume from it in place, so the set reopens its DB, from any partition's
// Store::Resume; every acknowledged commit is there, the unknown one tells the truth, work goes on.
// Deactivated afterwards, the partition whose write failed is an unclean copy, the others clean.
// An effect family's name may look like the layout's own ("0" of partition "a" is named "p:a:1:0", which
// ends like a records family): it is still the caller's family, with plain options. Values that decode
// as expired idem records survive flushes and compactions.
TEST_F(PartitionSetTest, EffectFamiliesNamedLikeTheLayoutKeepTheirValues) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, OpenSet());
  engine::Record expired;
  expired.state = engine::RecordState::kDone;
  expired.deadline_us = absl::ToUnixMicros(clock_->Now() - absl::Hours(1));
  expired.token = 1;
  const std::string looks_expired = engine::EncodeRecord(expired);
  const PartitionLayout layout{"a", {"0", "x:0", ":0"}};
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(layout, ActivateOptions{}));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("evt"));
  rocksdb::WriteBatch effects;
  for (size_t i = 1; i <= layout.effect_families.size(); ++i) effects.Put(p->family(i), "k", looks_expired);
  ASSERT_THAT(p->store().Commit("evt", r.token, "", &effects), IsOk());
  for (size_t i = 1; i <= layout.effect_families.size(); ++i) {
    EXPECT_EQ(set->db()->GetOptions(p->family(i)).compaction_filter_factory, nullptr) << p->family(i)->GetName();
    ASSERT_TRUE(set->db()->Flush(rocksdb::FlushOptions(), p->family(i)).ok());
    ASSERT_TRUE(set->db()->CompactRange(rocksdb::CompactRangeOptions(), p->family(i), nullptr, nullptr).ok());
    std::string value;
    EXPECT_TRUE(set->db()->Get(rocksdb::ReadOptions(), p->family(i), "k", &value).ok()) << p->family(i)->GetName();
  }
  // And after the set reopens its DB, when the options are chosen by name alone.
  ASSERT_THAT(set->Deactivate("a", KeepLocalCopy::kKeep), IsOk());
  ASSERT_THAT(set->Close(), IsOk());
  set.reset();
  IDEM_ASSERT_OK_AND_ASSIGN(set, OpenSet());
  ActivateOptions reuse;
  reuse.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(p, set->Activate(layout, reuse));
  EXPECT_NE(set->db()->GetOptions(p->family(0)).compaction_filter_factory, nullptr);
  for (size_t i = 1; i <= layout.effect_families.size(); ++i) {
    EXPECT_EQ(set->db()->GetOptions(p->family(i)).compaction_filter_factory, nullptr) << p->family(i)->GetName();
    ASSERT_TRUE(set->db()->CompactRange(rocksdb::CompactRangeOptions(), p->family(i), nullptr, nullptr).ok());
    std::string value;
    EXPECT_TRUE(set->db()->Get(rocksdb::ReadOptions(), p->family(i), "k", &value).ok()) << p->family(i)->GetName();
  }
}

// Under the FIFO profile, only the records family drops whole files by age; an effect family named "0"
// keeps its data past the TTL.
TEST(PartitionSetFifoTest, AnEffectFamilyNamedZeroIsNotDroppedByAge) {
  ScratchDir dir;
  auto sim = std::make_shared<tools::SimulatedClock>(absl::ToUnixMicros(absl::Now()));
  tools::SimulatedTimeEnv env(sim);
  PartitionSetOptions options;
  options.store.compaction = CompactionProfile::kFifo;
  options.store.ttl = absl::Minutes(1);
  options.store.lease = absl::Seconds(10);
  options.store.clock = sim;
  options.store.env = &env;
  options.store.recent_commits_cache_entries = 0;
  options.maintenance_interval = absl::ZeroDuration();
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(options, dir.Sub("set")));
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(PartitionLayout{"a", {"0"}}, ActivateOptions{}));
  auto commit = [&](const std::string& id) {
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve(id));
    rocksdb::WriteBatch effects;
    effects.Put(p->family(1), id, "kept");
    ASSERT_THAT(p->store().Commit(id, r.token, "", &effects), IsOk());
    ASSERT_TRUE(set->db()->Flush(rocksdb::FlushOptions(), {p->family(0), p->family(1)}).ok());
  };
  commit("old");
  sim->AdvanceTo(sim->micros() + absl::ToInt64Microseconds(absl::Minutes(3)));
  commit("new");  // a new file makes FIFO look at the ages of the old ones
  for (size_t i : {0, 1}) {
    ASSERT_TRUE(set->db()->CompactRange(rocksdb::CompactRangeOptions(), p->family(i), nullptr, nullptr).ok());
  }
  ASSERT_TRUE(WaitFor([&] { return p->store().Peek("old").status().code() == absl::StatusCode::kNotFound; }))
      << "FIFO never dropped the records family's old file; the test would prove nothing";
  // FIFO drops by age in the background: let the effect family's turn come and go too.
  EXPECT_TRUE(WaitFor([&] {
    uint64_t pending = 1, running = 1;
    return set->db()->GetIntProperty(p->family(1), "rocksdb.compaction-pending", &pending) &&
           set->db()->GetIntProperty("rocksdb.num-running-compactions", &running) && pending == 0 && running == 0;
  }));
  EXPECT_NE(set->db()->GetOptions(p->family(1)).compaction_style, rocksdb::kCompactionStyleFIFO);
  std::string value;
  EXPECT_TRUE(set->db()->Get(rocksdb::ReadOptions(), p->family(1), "old", &value).ok());
  EXPECT_TRUE(set->db()->Get(rocksdb::ReadOptions(), p->family(1), "new", &value).ok());
}

TEST(PartitionSetFailureTest, AFatalWriteErrorIsRecoveredByReopeningTheSetsDb) {
  ScratchDir dir;
  auto fs = std::make_shared<testing::FaultFs>();
  std::unique_ptr<rocksdb::Env> env = testing::EnvOver(fs);
  PartitionSetOptions options;
  options.store.env = env.get();
  options.maintenance_interval = absl::ZeroDuration();
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(options, dir.Sub("set")));
  std::vector<Partition*> partitions;
  for (int i = 0; i < 3; ++i) {
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(LayoutOf(i), ActivateOptions{}));
    for (int k = 0; k < 5; ++k) {
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("acked-" + std::to_string(k)));
      rocksdb::WriteBatch effects;
      effects.Put(p->family(1), "acct", std::to_string(k));
      ASSERT_THAT(p->store().Commit("acked-" + std::to_string(k), r.token, "", &effects), IsOk());
    }
    partitions.push_back(p);
  }
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation unknown, partitions[0]->store().Reserve("unknown"));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation held, partitions[2]->store().Reserve("held"));  // survives the reopen
  fs->Arm(testing::Fault::kIoError);
  EXPECT_THAT(partitions[0]->store().Commit("unknown", unknown.token), StatusIs(absl::StatusCode::kUnavailable));
  for (Partition* p : partitions) EXPECT_THAT(p->store().Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(set->Resume(), StatusIs(absl::StatusCode::kUnavailable));  // the fault persists
  EXPECT_THAT(partitions[1]->store().Reserve("x"), StatusIs(absl::StatusCode::kUnavailable));
  fs->Clear();
  ASSERT_THAT(partitions[1]->store().Resume(), IsOk());  // a partition's Resume is the set's
  EXPECT_GE(set->GetStats().reopens, 1u);
  for (Partition* p : partitions) {
    EXPECT_THAT(p->store().Health(), IsOk()) << p->layout().name;
    for (int k = 0; k < 5; ++k) {
      EXPECT_EQ(p->store().Reserve("acked-" + std::to_string(k))->verdict, Verdict::kDuplicate);
    }
    std::string value;
    ASSERT_TRUE(set->db()->Get(rocksdb::ReadOptions(), p->family(1), "acct", &value).ok());
    EXPECT_EQ(value, "4");
  }
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation again, partitions[0]->store().Reserve("unknown"));
  if (again.verdict != Verdict::kDuplicate) {
    EXPECT_THAT(partitions[0]->store().Commit("unknown", unknown.token), IsOk());  // still its holder
  }
  EXPECT_THAT(partitions[2]->store().Commit("held", held.token), IsOk());
  ASSERT_THAT(PartitionSetTest::CommitOne(partitions[1], "after"), IsOk());
  // After the reopen, partitions are activated on the new DB instance as before (the stores that were
  // active moved their claims to it: a stale one made every later activation refuse the "other" DB).
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * fresh, set->Activate(LayoutOf(7), ActivateOptions{}));
  ASSERT_THAT(PartitionSetTest::CommitOne(fresh, "on-the-new-db"), IsOk());
  ASSERT_THAT(set->Deactivate(LayoutOf(7).name, KeepLocalCopy::kDrop), IsOk());

  for (int i = 0; i < 3; ++i) ASSERT_THAT(set->Deactivate(LayoutOf(i).name, KeepLocalCopy::kKeep), IsOk());
  std::map<std::string, bool> clean;
  for (const LocalCopy& c : set->LocalCopies()) clean[c.layout.name] = c.clean;
  EXPECT_FALSE(clean[LayoutOf(0).name]);  // its write had an unknown outcome
  EXPECT_TRUE(clean[LayoutOf(1).name]);
  EXPECT_TRUE(clean[LayoutOf(2).name]);
}

}  // namespace
}  // namespace idem
