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
#include "tests/child_process.h"
#include "tests/ledger_db.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Child;
using ::idem::testing::IsOk;
using ::idem::testing::LedgerDb;
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
  Options options;
  options.sync = sync;
  options.maintenance_interval = absl::ZeroDuration();
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
