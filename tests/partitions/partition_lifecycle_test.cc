// PartitionSet's lifecycle calls racing each other and the calls in flight on its partitions: every
// pair of Activate, Deactivate (keep and drop), DropLocalCopy, Restore, CatchUp, Resume (reopening the
// DB) and Close, with stores in use, under ASan and TSan (label concurrency). The contract
// (idem/partition_set.h): no crash, no copy marked clean that lacks what was committed, a call that
// meets another gets a status, never freed memory.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "idem/changelog.h"
#include "idem/partition_set.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "testing/fault_fs.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

PartitionLayout Layout(int i) { return PartitionLayout{"orders/" + std::to_string(i), {"ledger"}}; }

absl::Status CommitOne(Partition* p, const std::string& id) {
  absl::StatusOr<Reservation> r = p->store().Reserve(id);
  if (!r.ok()) return r.status();
  if (r->verdict != Verdict::kReserved) return absl::AlreadyExistsError("not new");
  rocksdb::WriteBatch effects;
  rocksdb::ColumnFamilyHandle* cf = p->family(1);
  if (cf == nullptr) return absl::FailedPreconditionError("no family");
  effects.Put(cf, id, "1");
  return p->store().Commit(id, r->token, "ok", &effects);
}

PartitionSetOptions Options() {
  PartitionSetOptions o;
  o.block_cache_bytes = 8 << 20;
  o.write_buffer_budget_bytes = 32 << 20;
  o.maintenance_interval = absl::Milliseconds(5);
  return o;
}

// A partition deactivated with kKeep while DropLocalCopy races it: either the copy is gone, or it is
// there, clean, with every commit. Never a copy marked clean with nothing in it.
TEST(PartitionLifecycleTest, DropLocalCopyRacingDeactivateNeverLeavesACleanCopyMissingCommits) {
  ScratchDir dir;
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(Options(), dir.Sub("set")));
  for (int round = 0; round < 30; ++round) {
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(Layout(0), ActivateOptions{}));
    for (int k = 0; k < 50; ++k) ASSERT_THAT(CommitOne(p, "id-" + std::to_string(k)), IsOk());
    std::atomic<bool> go{false};
    std::thread dropper([&] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < 200; ++i) {
        if (set->DropLocalCopy(Layout(0).name).ok()) break;
      }
    });
    go = true;
    ASSERT_THAT(set->Deactivate(Layout(0).name, KeepLocalCopy::kKeep), IsOk());
    dropper.join();
    bool clean_copy = false;
    for (const LocalCopy& c : set->LocalCopies()) clean_copy |= c.layout.name == Layout(0).name && c.clean;
    ActivateOptions again;
    again.use_local_copy = clean_copy;
    IDEM_ASSERT_OK_AND_ASSIGN(p, set->Activate(Layout(0), again));
    if (clean_copy) {
      for (int k = 0; k < 50; ++k) {
        IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("id-" + std::to_string(k)));
        ASSERT_EQ(r.verdict, Verdict::kDuplicate) << "round " << round << ": a clean copy forgot id-" << k;
      }
    }
    ASSERT_THAT(set->Deactivate(Layout(0).name, KeepLocalCopy::kDrop), IsOk());
  }
}

// A handler mid-run holds its Partition (and Store) while the partition is deactivated, or the set is
// closed: its commit is refused with kFailedPrecondition, it reads kFailedPrecondition, nothing crashes.
TEST(PartitionLifecycleTest, AHandlerHoldingItsPartitionAcrossDeactivateOrCloseIsRefusedNotFreed) {
  for (bool close : {false, true}) {
    ScratchDir dir;
    IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(Options(), dir.Sub("set")));
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(Layout(1), ActivateOptions{}));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("mid-run"));
    rocksdb::WriteBatch effects;
    effects.Put(p->family(1), "k", "v");  // the handler's effects, built before
    if (close) {
      ASSERT_THAT(set->Close(), IsOk());
    } else {
      ASSERT_THAT(set->Deactivate(Layout(1).name, KeepLocalCopy::kDrop), IsOk());
    }
    EXPECT_EQ(p->family(1), nullptr);  // its handles are gone: not handed out any more
    EXPECT_THAT(p->store().Commit("mid-run", r.token, "", &effects), StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(p->Get(1, "k"), StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(p->store().Reserve("next"), StatusIs(absl::StatusCode::kFailedPrecondition));
  }
}

// A restore whose feed is still writing when the set is closed, or when a Resume reopens the DB: the
// feed's later writes are refused, the restore fails, nothing crashes; after a reopen the partition
// restores again.
TEST(PartitionLifecycleTest, CloseOrAReopeningResumeDuringARestoreFailsTheRestoreNotTheProcess) {
  for (bool close : {false, true}) {
    SCOPED_TRACE(close ? "Close" : "Resume");
    ScratchDir dir;
    auto fs = std::make_shared<testing::FaultFs>();
    std::unique_ptr<rocksdb::Env> env = testing::EnvOver(fs);
    PartitionSetOptions options = Options();
    options.store.env = env.get();
    IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(options, dir.Sub("set")));
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * other, set->Activate(Layout(2), ActivateOptions{}));
    std::atomic<int> phase{0};
    std::thread lifecycle([&] {
      while (phase.load() != 1) std::this_thread::yield();
      if (close) {
        set->Close().IgnoreError();
      } else {
        // A fatal WAL error on another partition, then its recovery: the set reopens its DB.
        fs->Arm(testing::Fault::kIoError);
        CommitOne(other, "fails").IgnoreError();
        fs->Clear();
        EXPECT_THAT(set->Resume(), IsOk());
      }
      phase = 2;
    });
    const absl::Status restored = set->Restore(Layout(3), [&](ChangelogReplayer::Sink* sink) {
      ChangelogReplayer replayer(ChangelogReplayer::Start::kLogStart, sink);
      ChangelogRecord claim;
      claim.type = ChangelogRecord::Type::kClaim;
      claim.claim = ClaimId{1, 1};
      if (absl::Status s = replayer.Feed(0, claim); !s.ok()) return s;
      for (int i = 1; i < 200; ++i) {
        if (i == 100) {
          phase = 1;
          while (phase.load() != 2) std::this_thread::yield();
        }
        ChangelogRecord batch;
        batch.type = ChangelogRecord::Type::kBatch;
        batch.claim = ClaimId{1, 1};
        batch.sequence = static_cast<uint64_t>(i);
        batch.previous_sequence = static_cast<uint64_t>(i - 1);
        batch.ops.push_back(ChangelogOp{ChangelogOp::Kind::kPut, 1, "k" + std::to_string(i), "v"});
        if (absl::Status s = replayer.Feed(i, batch); !s.ok()) return s;
      }
      return replayer.Finish();
    });
    lifecycle.join();
    EXPECT_FALSE(restored.ok());
    if (!close) {
      EXPECT_GE(set->GetStats().reopens, 1u);
      // The failed restore left nothing behind; a new one succeeds on the reopened DB.
      ASSERT_THAT(set->Restore(Layout(3), [](ChangelogReplayer::Sink*) { return absl::OkStatus(); }), IsOk());
      ActivateOptions a;
      a.use_local_copy = true;
      ASSERT_THAT(set->Activate(Layout(3), a).status(), IsOk());
    }
  }
}

// Every lifecycle call racing every other for a while, with commits and reads in flight on whatever
// partition a worker found active. Only statuses may come back; the set closes cleanly at the end and
// reopens with every kept copy readable.
TEST(PartitionLifecycleTest, EveryLifecycleCallRacesEveryOtherWithoutACrash) {
  ScratchDir dir;
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(Options(), dir.Sub("set")));
  constexpr int kNames = 4;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  auto worker = [&](int seed) {
    std::mt19937 rng(seed);
    int n = 0;
    while (!stop) {
      const int i = static_cast<int>(rng() % kNames);
      const std::string name = Layout(i).name;
      switch (rng() % 8) {
        case 0: {
          ActivateOptions a;
          a.use_local_copy = rng() % 2 == 0;
          set->Activate(Layout(i), a).status().IgnoreError();
          break;
        }
        case 1:
          set->Deactivate(name, rng() % 2 == 0 ? KeepLocalCopy::kKeep : KeepLocalCopy::kDrop).IgnoreError();
          break;
        case 2: set->DropLocalCopy(name).IgnoreError(); break;
        case 3: set->Restore(Layout(i), [](ChangelogReplayer::Sink*) { return absl::OkStatus(); }).IgnoreError(); break;
        case 4: set->CatchUp(Layout(i), [](ChangelogReplayer::Sink*) { return absl::OkStatus(); }).IgnoreError(); break;
        case 5: set->Resume().IgnoreError(); break;
        default: {
          if (Partition* p = set->Find(name)) {
            CommitOne(p, "w" + std::to_string(seed) + "-" + std::to_string(++n)).IgnoreError();
            p->Get(1, "w").status().IgnoreError();
          }
          set->GetStats();
          set->LocalCopies();
          break;
        }
      }
      ++calls;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t + 1);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Close while everything runs: later calls are refused.
  EXPECT_THAT(set->Close(), IsOk());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  stop = true;
  for (std::thread& t : threads) t.join();
  EXPECT_GT(calls.load(), 100u);
  EXPECT_THAT(set->Activate(Layout(0), ActivateOptions{}).status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  set.reset();
  IDEM_ASSERT_OK_AND_ASSIGN(set, PartitionSet::Open(Options(), dir.Sub("set")));
  for (const LocalCopy& c : set->LocalCopies()) {
    if (!c.clean) continue;
    ActivateOptions a;
    a.use_local_copy = true;
    EXPECT_THAT(set->Activate(c.layout, a).status(), IsOk()) << c.layout.name;
  }
}

// Open descriptors of this process.
int OpenDescriptors() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

// Partitions with files on disk for both their families, under a soft descriptor limit they would
// exceed (two descriptors each, three before column families shared their directory's): the set raises
// the soft limit to the hard one, as Go's runtime does for every program, and reopens under it.
TEST(PartitionLifecycleTest, PartitionsPastTheSoftDescriptorLimitActivateAndTheSetReopens) {
  const int n = std::getenv("IDEM_TEST_PARTITIONS") != nullptr ? 60 : 100;
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  if (old.rlim_max != RLIM_INFINITY && old.rlim_max < static_cast<rlim_t>(4 * n)) {
    GTEST_SKIP() << "the hard descriptor limit (" << old.rlim_max << ") is below what the test needs";
  }
  rlimit limited = old;
  limited.rlim_cur = static_cast<rlim_t>(n);  // far below what n partitions hold
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limited), 0);
  struct Restore {
    rlimit r;
    ~Restore() { setrlimit(RLIMIT_NOFILE, &r); }
  } restore{old};

  ScratchDir dir;
  PartitionSetOptions options = Options();
  options.maintenance_interval = absl::ZeroDuration();
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(options, dir.Sub("set")));
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<Partition*> p = set->Activate(Layout(i), ActivateOptions{});
      ASSERT_THAT(p.status(), IsOk()) << "partition " << i << " of " << n << " with " << OpenDescriptors()
                                      << " descriptors open";
      ASSERT_THAT(CommitOne(*p, "evt-" + std::to_string(i)), IsOk());
      ASSERT_TRUE(set->db()->Flush(rocksdb::FlushOptions(), (*p)->family(0)).ok());
      ASSERT_TRUE(set->db()->Flush(rocksdb::FlushOptions(), (*p)->family(1)).ok());
    }
    EXPECT_LT(OpenDescriptors(), 2 * n + 64) << "more than the two files of each partition";
    for (int i = 0; i < n; ++i) ASSERT_THAT(set->Deactivate(Layout(i).name, KeepLocalCopy::kKeep), IsOk());
    ASSERT_THAT(set->Close(), IsOk());
  }
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(options, dir.Sub("set")));
  ASSERT_EQ(set->LocalCopies().size(), static_cast<size_t>(n));
  ActivateOptions again;
  again.use_local_copy = true;
  for (int i = 0; i < n; i += 7) {
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(Layout(i), again));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("evt-" + std::to_string(i)));
    EXPECT_EQ(r.verdict, Verdict::kDuplicate) << i;
  }
}

}  // namespace
}  // namespace idem
