// The store's lifecycle: one store per directory per process whatever the spelling, Close always wins
// over recovery, a reopen never creates or swaps the store, and Open's errors say what to do next.
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "idem/processor.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "testing/fault_fs.h"
#include "tests/support/ledger_db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Fault;
using ::idem::testing::FaultFs;
using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

TEST(OneStorePerDirectoryTest, SecondOpenUnderAnotherSpellingIsRefused) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  IDEM_ASSERT_OK_AND_ASSIGN(auto first, Store::Open(ManualOptions(), path));
  std::filesystem::create_directory_symlink(path, dir.Sub("link"));
  for (const std::string& other : {path + "/", path + "/.", dir.path() + "/./db", dir.Sub("link")}) {
    absl::StatusOr<std::unique_ptr<Store>> second = Store::Open(ManualOptions(), other);
    EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition)) << other;
    EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr("already open in this process"));
  }
  // The first store is untouched, and once it is closed the directory can be opened again.
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, first->Reserve("evt"));
  ASSERT_THAT(first->Commit("evt", r.token), IsOk());
  ASSERT_THAT(first->Close(), IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(auto again, Store::Open(ManualOptions(), dir.Sub("link")));
  EXPECT_EQ(again->Reserve("evt")->verdict, Verdict::kDuplicate);
}

TEST(OneStorePerDirectoryTest, TwoStoresOnOneColumnFamilyAreRefused) {
  ScratchDir dir;
  Options options = ManualOptions();
  testing::LedgerDb caller(dir.Sub("db"), ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(caller.status.ok());
  IDEM_ASSERT_OK_AND_ASSIGN(auto first, Store::Attach(caller.db.get(), caller.idem(), options));
  EXPECT_THAT(Store::Attach(caller.db.get(), caller.idem(), options), StatusIs(absl::StatusCode::kFailedPrecondition));
  // Open of the caller's directory would be a second DB instance on it.
  EXPECT_THAT(Store::Open(options, dir.Sub("db") + "/"), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(first->Close(), IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(auto second, Store::Attach(caller.db.get(), caller.idem(), options));

  // A Store from Open, and a second Store attached to its own column family: refused too.
  IDEM_ASSERT_OK_AND_ASSIGN(auto owned, Store::Open(options, dir.Sub("owned")));
  EXPECT_THAT(Store::Attach(owned->db(), owned->column_family(), options),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_ = std::make_shared<FaultFs>();
    env_ = testing::EnvOver(fs_);
    options_ = ManualOptions();
    options_.env = env_.get();
    options_.durable_reservations = false;
  }
  // Puts the store into a state only a reopen can fix (a failed WAL write is fatal for RocksDB).
  void BreakWrites(Store* store) {
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("break-" + std::to_string(breaks_++)));
    fs_->Arm(Fault::kIoError);
    ASSERT_THAT(store->Commit("break-" + std::to_string(breaks_ - 1), r.token),
                StatusIs(absl::StatusCode::kUnavailable));
  }
  // Whether this process still has the DB at `path` open: a plain RocksDB open of it fails then.
  bool DirectoryFree(const std::string& path) {
    rocksdb::DBOptions o;
    std::vector<std::string> names;
    if (!rocksdb::DB::ListColumnFamilies(o, path, &names).ok()) return true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(o, path, cfs, &handles, &raw);
    if (!s.ok()) return false;
    for (auto* h : handles) raw->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    delete raw;
    return true;
  }

  ScratchDir dir_;
  std::shared_ptr<FaultFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  Options options_;
  int breaks_ = 0;
};

TEST_F(LifecycleTest, ResumeOnAClosedStoreIsFailedPrecondition) {
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options_, dir_.Sub("db")));
  ASSERT_THAT(store->Close(), IsOk());
  EXPECT_THAT(store->Resume(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store->Reserve("x"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store->Health(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Close while Resume is reopening and the reopen keeps failing: after Close nothing reopens, the
// directory is free, and destruction does not abort.
TEST_F(LifecycleTest, CloseWinsOverAFailingReopen) {
  for (int round = 0; round < 20; ++round) {
    const std::string path = dir_.Sub("db-" + std::to_string(round));
    auto store = Store::Open(options_, path);
    ASSERT_THAT(store, IsOk());
    BreakWrites(store->get());
    fs_->Arm(Fault::kIoError, testing::kWrites | testing::kOpen);  // the reopen fails too
    std::atomic<bool> stop{false};
    std::thread resumer([&] {
      while (!stop.load()) (*store)->Resume().IgnoreError();
    });
    absl::SleepFor(absl::Microseconds(200 * (round % 5)));
    const absl::Status closed = (*store)->Close();
    (void)closed;  // RocksDB may report the fault it was closed with
    fs_->Clear();  // a reopen now would succeed: none may happen
    absl::SleepFor(absl::Milliseconds(5));
    stop.store(true);
    resumer.join();
    EXPECT_THAT((*store)->Resume(), StatusIs(absl::StatusCode::kFailedPrecondition)) << round;
    EXPECT_THAT((*store)->Reserve("after"), StatusIs(absl::StatusCode::kFailedPrecondition)) << round;
    EXPECT_TRUE(DirectoryFree(path)) << "the closed store reopened its DB (round " << round << ")";
    store->reset();  // must not abort
  }
}

// The same race, driven by the Processor's recovery thread while the application shuts down.
TEST_F(LifecycleTest, ProcessorRecoveryRacingShutdownNeverReopens) {
  for (int round = 0; round < 10; ++round) {
    const std::string path = dir_.Sub("p-" + std::to_string(round));
    auto store = Store::Open(options_, path);
    ASSERT_THAT(store, IsOk());
    ProcessorOptions popts;
    popts.backoff_initial = absl::Microseconds(50);
    popts.backoff_max = absl::Microseconds(200);
    {
      Processor processor(store->get(), popts);
      fs_->Arm(Fault::kIoError, testing::kWrites | testing::kOpen);
      HandleResult r =
          processor.Handle({"evt"}, [](const EventContext&) -> absl::StatusOr<std::string> { return "x"; });
      EXPECT_EQ(r.outcome, Outcome::kUnavailable);
      absl::SleepFor(absl::Microseconds(300 * (round % 4)));
      (*store)->Close().IgnoreError();  // shutdown: the store first, the processor after
      fs_->Clear();
      absl::SleepFor(absl::Milliseconds(5));
      EXPECT_FALSE(processor.healthy());
    }
    EXPECT_TRUE(DirectoryFree(path)) << "round " << round;
    store->reset();
  }
}

// rm -rf of a running store's directory: a reopen must not create an empty store in its place.
TEST_F(LifecycleTest, DeletedDirectoryIsNotRecreatedByResume) {
  options_.env = nullptr;  // real files, deleted for real
  options_.sync = true;
  auto real_fs = std::make_shared<FaultFs>();
  auto real_env = testing::EnvOver(real_fs);
  options_.env = real_env.get();
  const std::string path = dir_.Sub("db");
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options_, path));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("remembered"));
  ASSERT_THAT(store->Commit("remembered", r.token), IsOk());
  real_fs->Arm(Fault::kIoError);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation held, store->Reserve("during"));
  ASSERT_THAT(store->Commit("during", held.token), StatusIs(absl::StatusCode::kUnavailable));
  std::filesystem::remove_all(path);
  real_fs->Clear();
  EXPECT_THAT(store->Resume(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(std::filesystem::exists(path + "/CURRENT")) << "a reopen created a new, empty store";
  // Calls are turned away as kUnavailable (a consumer pauses; kDataLoss would dead-letter the event),
  // Resume keeps saying what is wrong.
  EXPECT_THAT(store->Reserve("remembered"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store->Resume(), StatusIs(absl::StatusCode::kDataLoss));
}

// The directory now holds another store (restored from the wrong backup, say): refused the same way.
TEST_F(LifecycleTest, ReplacedDirectoryIsRefusedByResume) {
  options_.sync = true;
  const std::string path = dir_.Sub("db");
  const std::string other = dir_.Sub("other");
  Options plain = ManualOptions();
  { IDEM_ASSERT_OK_AND_ASSIGN(auto unrelated, Store::Open(plain, other)); }
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options_, path));
  BreakWrites(store.get());
  std::filesystem::remove_all(path);
  std::filesystem::rename(other, path);
  fs_->Clear();
  EXPECT_THAT(store->Resume(), StatusIs(absl::StatusCode::kDataLoss));
}

// Below the free-space reserve nothing is written: new reservations and commits are refused with
// kUnavailable before RocksDB could meet a full disk; reads still answer.
TEST(DiskGuardTest, WritesAreRefusedBelowTheFreeSpaceReserve) {
  ScratchDir dir;
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto roomy, Store::Open(options, dir.Sub("db")));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation done, roomy->Reserve("done"));
  ASSERT_THAT(roomy->Commit("done", done.token, "r"), IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation held, roomy->Reserve("held"));
  ASSERT_THAT(roomy->Close(), IsOk());

  options.min_free_disk_bytes = int64_t{1} << 60;  // more than any disk has
  for (bool durable : {true, false}) {
    options.durable_reservations = durable;
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    absl::StatusOr<Reservation> fresh = store->Reserve("fresh");
    EXPECT_THAT(fresh, StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_THAT(std::string(fresh.status().message()), ::testing::HasSubstr("disk nearly full"));
    EXPECT_THAT(store->Health(), StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_THAT(store->Resume(), StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_EQ(store->Reserve("done")->verdict, Verdict::kDuplicate) << "reads still answer";
    EXPECT_GT(store->GetStats().disk_refusals, 0u);
    EXPECT_GT(store->GetStats().disk_free_bytes, 0u);
  }
}

TEST(OpenErrorTest, MissingParentsAreCreatedAndPermanentErrorsAreNotUnavailable) {
  ScratchDir dir;
  IDEM_ASSERT_OK_AND_ASSIGN(auto deep, Store::Open(ManualOptions(), dir.Sub("a/b/c/db")));
  EXPECT_EQ(deep->Reserve("x")->verdict, Verdict::kReserved);

  { std::ofstream(dir.Sub("file")) << "x"; }
  EXPECT_THAT(Store::Open(ManualOptions(), dir.Sub("file")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Store::Open(ManualOptions(), dir.Sub("file/db")), StatusIs(absl::StatusCode::kInvalidArgument));

  if (::geteuid() != 0) {
    std::filesystem::create_directory(dir.Sub("locked"));
    std::filesystem::permissions(dir.Sub("locked"), std::filesystem::perms::owner_read);
    EXPECT_THAT(Store::Open(ManualOptions(), dir.Sub("locked/db")), StatusIs(absl::StatusCode::kPermissionDenied));
    std::filesystem::permissions(dir.Sub("locked"), std::filesystem::perms::owner_all);
  } else {
    // As root permissions do not bind; a read-only file system does.
    const std::string ro = dir.Sub("ro");
    std::filesystem::create_directory(ro);
    if (::mount("idem-ro", ro.c_str(), "tmpfs", MS_RDONLY, "size=1m") == 0) {
      EXPECT_THAT(Store::Open(ManualOptions(), ro + "/db"), StatusIs(absl::StatusCode::kFailedPrecondition));
      ::umount(ro.c_str());
    } else {
      std::printf("[ skipped  ] read-only mount not permitted here\n");
    }
  }
}

}  // namespace
}  // namespace idem
