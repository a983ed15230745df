// Process crashes: a real consumer process (crash_worker) is killed with SIGKILL at random moments;
// after each reopen every acknowledged commit is there with its effect, effects and markers agree
// (atomic batch), and tokens never go backwards. Also: a store held by another process is refused.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "tests/support/child_process.h"
#include "tests/support/fake_clock.h"
#include "tests/support/ledger_db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Child;
using ::idem::testing::IsOk;
using ::idem::testing::LedgerDb;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

struct Acknowledged {
  std::map<std::string, uint64_t> committed;  // id -> token
  uint64_t max_token = 0;
};

Acknowledged Parse(const std::string& output) {
  Acknowledged acked;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind, id;
    uint64_t token = 0;
    if (!(fields >> kind >> id >> token)) continue;  // the last line may be torn by the kill
    acked.max_token = std::max(acked.max_token, token);
    if (kind == "C") acked.committed[id] = token;
  }
  return acked;
}

void RunCrashCycles(bool sync, int cycles) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  std::mt19937 rng(sync ? 7 : 11);
  Options options = ManualOptions();
  options.sync = sync;
  size_t total_acked = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    Child child({IDEM_CRASH_WORKER, path, std::to_string(cycle * 1'000'000), sync ? "1" : "0"});
    ASSERT_TRUE(child.running());
    // Let it make progress, then kill it at a random moment.
    ASSERT_TRUE(child.ReadUntilOutput("C ", absl::Seconds(20))) << "worker exited early";
    const absl::Time kill_at = absl::Now() + absl::Milliseconds(std::uniform_int_distribution<int>(5, 200)(rng));
    child.ReadUntil(kill_at);  // an early exit shows in the kill status below
    const int status = child.Kill();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "worker died on its own: " << status;
    const Acknowledged acked = Parse(child.output());
    ASSERT_FALSE(acked.committed.empty());
    total_acked += acked.committed.size();

    LedgerDb db(path, ColumnFamilyOptionsFor(options));
    ASSERT_TRUE(db.status.ok()) << db.status.ToString();
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Attach(db.db.get(), db.idem(), options));
    for (const auto& [id, token] : acked.committed) {
      IDEM_ASSERT_OK_AND_ASSIGN(RecordInfo info, store->Peek(id));
      EXPECT_EQ(info.state, RecordInfo::State::kDone) << id;
      EXPECT_EQ(info.token, token) << id;
    }
    // Effects and markers agree both ways: every ledger entry has its done marker with the same token.
    std::unique_ptr<rocksdb::Iterator> it(db.db->NewIterator(rocksdb::ReadOptions(), db.ledger()));
    size_t ledger_entries = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++ledger_entries;
      absl::StatusOr<RecordInfo> info = store->Peek(it->key().ToString());
      ASSERT_THAT(info, IsOk()) << it->key().ToString();
      EXPECT_EQ(info->state, RecordInfo::State::kDone);
      EXPECT_EQ(std::to_string(info->token), it->value().ToString());
    }
    EXPECT_GE(ledger_entries, total_acked);
    // Tokens keep growing after the crash.
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation fresh, store->Reserve("after-crash-" + std::to_string(cycle)));
    EXPECT_GT(fresh.token, acked.max_token);
  }
}

TEST(CrashTest, SigkillLosesNoAcknowledgedCommitDefaultMode) { RunCrashCycles(/*sync=*/false, 8); }

TEST(CrashTest, SigkillLosesNoAcknowledgedCommitSyncMode) { RunCrashCycles(/*sync=*/true, 4); }

// A restart takes over what its predecessor left in flight at once: the predecessor was killed, so its
// holders are gone (RocksDB's lock guarantees it), and waiting out their leases would only stall the
// redeliveries. The clock is frozen, so no lease can have run out: every takeover is by the floor.
TEST(CrashTest, RestartTakesOverKilledProcessReservationsAtOnce) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  constexpr int kInFlight = 1000;
  Child child({IDEM_CRASH_WORKER, path, "0", "0", "inflight", std::to_string(kInFlight)});
  ASSERT_TRUE(child.running());
  ASSERT_TRUE(child.ReadUntilOutput("ready", absl::Seconds(60))) << "worker exited early";
  const int status = child.Kill();
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  std::map<std::string, uint64_t> left;  // id -> the killed process's token
  std::istringstream lines(child.output());
  for (std::string kind, id, token; lines >> kind >> id >> token;) {
    if (kind == "I") left[id] = std::stoull(token);
  }
  ASSERT_EQ(left.size(), static_cast<size_t>(kInFlight));

  auto clock = std::make_shared<testing::FakeClock>(absl::Now());
  Options options = ManualOptions(clock);
  options.durable_reservations = true;
  const absl::Time restarted = absl::Now();
  LedgerDb db(path, ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(db.status.ok()) << db.status.ToString();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Attach(db.db.get(), db.idem(), options));
  IDEM_ASSERT_OK_AND_ASSIGN(std::vector<InDoubtReservation> in_doubt, store->InDoubt());
  ASSERT_EQ(in_doubt.size(), left.size());
  for (const InDoubtReservation& r : in_doubt) EXPECT_LT(r.token, store->TokenFloor()) << r.id;
  for (const auto& [id, token] : left) {
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation again, store->Reserve(id));
    ASSERT_EQ(again.verdict, Verdict::kReserved) << id << " waits for a dead holder's lease";
    EXPECT_TRUE(again.takeover && again.holder_gone) << id;
    EXPECT_EQ(again.previous_token, token) << id;
    EXPECT_GT(again.token, token);
  }
  // Reported, not asserted (timing): how long the restart took until every ID was reserved again.
  std::printf("restart: %d reservations taken over in %.1f ms (lease %s)\n", kInFlight,
              absl::ToDoubleMilliseconds(absl::Now() - restarted), absl::FormatDuration(options.lease).c_str());
  EXPECT_EQ(store->GetStats().takeovers, static_cast<uint64_t>(kInFlight));
  IDEM_ASSERT_OK_AND_ASSIGN(in_doubt, store->InDoubt());
  for (const InDoubtReservation& r : in_doubt) EXPECT_GE(r.token, store->TokenFloor()) << "now this process's";
}

TEST(CrashTest, StoreHeldByAnotherProcessIsRefusedClearly) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  Child holder({IDEM_CRASH_WORKER, path, "0", "0", "hold"});
  ASSERT_TRUE(holder.running());
  ASSERT_TRUE(holder.ReadUntilOutput("ready", absl::Seconds(20)));
  Options options;
  options.column_family = "idem";
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options, path);
  EXPECT_THAT(store, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store.status().message(), ::testing::HasSubstr("held by another process"));
  holder.Kill();
  // Once the holder is gone the store opens.
  EXPECT_THAT(Store::Open(options, path), IsOk());
}

}  // namespace
}  // namespace idem
