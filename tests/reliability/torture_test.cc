// Crash torture and power loss: a real consumer process (torture_worker: reserve, commit with effects,
// release, batches, background and manual compaction, a TTL short enough that IDs expire and are
// removed while it runs) is killed with SIGKILL at random moments, cycle after cycle on the same store.
// In the power-loss variants the files are then cut back to what was fsynced (testing/power_loss_fs.h).
// After every cycle:
//  - the store opens cleanly and every record decodes;
//  - every acknowledged commit still within its TTL is there, with its token; except, with sync = false
//    and power loss, the most recent acknowledged commits, and only as a suffix of the acknowledgement
//    order (never a hole, never a torn store); with a WAL sync interval, only commits started within
//    about that interval before the loss;
//  - effects exactly once: two ledger entries for one ID are at least a TTL apart (the second delivery
//    was admitted only after the first had expired), and a live entry's marker carries its token;
//  - tokens are never handed out twice, across crashes and power losses.
// IDEM_TORTURE_CYCLES=N runs N cycles per case instead of the CI default (the long mode).
#include <sys/wait.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/records/record.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "testing/power_loss_fs.h"
#include "tests/support/child_process.h"
#include "tests/support/ledger_db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Child;
using ::idem::testing::IsOk;
using ::idem::testing::LedgerDb;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;

constexpr int64_t kTtlMs = 1500;

struct Case {
  const char* name;
  bool sync = false;
  bool durable = true;
  bool power_loss = false;
  bool torn_wal = false;
  int wal_sync_ms = 0;
  int cycles = 10;
};

int Cycles(const Case& c) {
  const char* env = std::getenv("IDEM_TORTURE_CYCLES");
  return env != nullptr ? std::atoi(env) : c.cycles;
}

struct Commit {
  uint64_t token = 0;
  int64_t start_us = 0;
  size_t order = 0;  // position among this incarnation's acknowledgements
};

struct Totals {
  int cycles = 0;
  uint64_t acknowledged = 0, checked = 0, lost = 0, bytes_dropped = 0, reserves = 0;
};

void RunTorture(const Case& c, Totals* totals) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  const std::string journal = dir.Sub("journal");
  std::mt19937 rng(static_cast<unsigned>(std::hash<std::string>()(c.name)));
  Options options = ManualOptions();
  options.sync = c.sync;
  options.durable_reservations = c.durable;
  options.ttl = absl::Milliseconds(kTtlMs);
  options.lease = options.ttl / 4;
  const int64_t ttl_us = kTtlMs * 1000;

  std::map<std::string, Commit> latest;  // id -> the latest commit known to exist
  std::set<uint64_t> tokens;             // every token a Reserve ever returned
  const int cycles = Cycles(c);
  for (int cycle = 0; cycle < cycles; ++cycle) {
    Child child({IDEM_TORTURE_WORKER, path, std::to_string(1 + cycle * 10'000'000L), std::to_string(rng()),
                 c.sync ? "1" : "0", c.durable ? "1" : "0", std::to_string(kTtlMs), c.power_loss ? journal : "-",
                 std::to_string(c.wal_sync_ms)});
    ASSERT_TRUE(child.running());
    ASSERT_TRUE(child.ReadUntilOutput("\nC ", absl::Seconds(30))) << "worker exited early";
    // Some cycles run past a TTL, so that expiry and compaction happen under the kill as well.
    const int run_ms = std::uniform_int_distribution<int>(5, cycle % 3 == 0 ? 2500 : 400)(rng);
    const absl::Time kill_at = absl::Now() + absl::Milliseconds(run_ms);
    ASSERT_TRUE(child.ReadUntil(kill_at)) << "worker exited early";
    const int64_t killed_us = absl::ToUnixMicros(absl::Now());
    const int status = child.Kill();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "worker died on its own: " << status;

    // This incarnation's acknowledgements, in order.
    std::vector<std::pair<std::string, Commit>> acked;
    {
      std::istringstream in(child.output());
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string kind, id;
        uint64_t token = 0;
        if (!(fields >> kind >> id >> token)) continue;  // the last line may be torn by the kill
        if (kind == "R") {
          ASSERT_TRUE(tokens.insert(token).second) << "token " << token << " handed out twice (" << id << ")";
          ++totals->reserves;
        } else if (kind == "C") {
          Commit commit{token, 0, acked.size()};
          if (!(fields >> commit.start_us)) continue;
          acked.emplace_back(id, commit);
        }
      }
    }
    ASSERT_FALSE(acked.empty());
    totals->acknowledged += acked.size();
    if (c.power_loss) {
      const testing::PowerLossReport report = testing::ApplyPowerLoss(journal, c.torn_wal, &rng);
      totals->bytes_dropped += report.bytes_dropped;
    }

    LedgerDb db(path, ColumnFamilyOptionsFor(options));
    ASSERT_TRUE(db.status.ok()) << "cycle " << cycle << ": " << db.status.ToString();
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Attach(db.db.get(), db.idem(), options));
    // Judged at each check: checking takes a while, and background compactions remove what expires
    // meanwhile. The margin covers the time between this judgement and the read that follows it.
    auto must_be_live = [&](int64_t start_us) { return start_us + ttl_us > absl::ToUnixMicros(absl::Now()) + 200'000; };

    // Every record decodes.
    {
      rocksdb::ReadOptions every_key;
      every_key.total_order_seek = true;
      std::unique_ptr<rocksdb::Iterator> it(db.db->NewIterator(every_key, db.idem()));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (it->key().empty()) continue;
        ASSERT_THAT(engine::DecodeRecord(std::string_view(it->value().data(), it->value().size())), IsOk())
            << "cycle " << cycle << ": " << it->key().ToString();
      }
      ASSERT_TRUE(it->status().ok()) << it->status().ToString();
    }

    // Acknowledged commits of this incarnation: present, or (sync = false + power loss) a lost suffix.
    size_t last_present = 0, first_lost = SIZE_MAX;
    bool any_present = false;
    for (const auto& [id, commit] : acked) {
      latest[id] = commit;  // provisional: removed again below if lost
      if (!must_be_live(commit.start_us)) continue;
      ++totals->checked;
      absl::StatusOr<RecordInfo> info = store->Peek(id);
      const bool present = info.ok() && info->state == RecordInfo::State::kDone && info->token == commit.token;
      if (present) {
        last_present = std::max(last_present, commit.order);
        any_present = true;
        continue;
      }
      ASSERT_TRUE(c.power_loss && !c.sync)
          << "cycle " << cycle << ": acknowledged commit of " << id << " token " << commit.token
          << " is gone: " << (info.ok() ? "other record" : info.status().ToString());
      first_lost = std::min(first_lost, commit.order);
      if (c.wal_sync_ms > 0) {
        // Lost only if it started within about a sync interval (plus scheduling slack) before the loss.
        EXPECT_GT(commit.start_us, killed_us - (c.wal_sync_ms + 250) * 1000) << id;
      }
    }
    if (first_lost != SIZE_MAX) {
      ASSERT_TRUE(!any_present || last_present < first_lost)
          << "cycle " << cycle << ": a lost commit (#" << first_lost << ") before a kept one (#" << last_present
          << "): the loss is not a suffix";
      for (const auto& [id, commit] : acked) {
        if (commit.order >= first_lost) {
          ++totals->lost;
          // Gone with the WAL tail; an earlier commit of the same ID (if any) is what remains.
          auto it = latest.find(id);
          if (it != latest.end() && it->second.token == commit.token) latest.erase(it);
        }
      }
    }
    // Earlier incarnations' commits still within their TTL are still there.
    for (const auto& [id, commit] : latest) {
      if (!must_be_live(commit.start_us)) continue;
      IDEM_ASSERT_OK_AND_ASSIGN(RecordInfo info, store->Peek(id));
      ASSERT_EQ(info.state, RecordInfo::State::kDone) << id;
      ASSERT_GE(info.token, commit.token) << id;
    }

    // Effects exactly once, and each live effect's marker carries its token.
    {
      std::map<std::string, std::vector<std::pair<uint64_t, int64_t>>> effects;  // id -> (token, start_us)
      std::unique_ptr<rocksdb::Iterator> it(db.db->NewIterator(rocksdb::ReadOptions(), db.ledger()));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        const std::string key = it->key().ToString();
        const size_t slash = key.rfind('/');
        ASSERT_NE(slash, std::string::npos) << key;
        effects[key.substr(0, slash)].emplace_back(std::stoull(key.substr(slash + 1)),
                                                   std::stoll(it->value().ToString()));
      }
      for (auto& [id, list] : effects) {
        std::sort(list.begin(), list.end());
        for (size_t i = 1; i < list.size(); ++i) {
          ASSERT_GE(list[i].second - list[i - 1].second, ttl_us)
              << "cycle " << cycle << ": " << id << " applied twice within its TTL (tokens " << list[i - 1].first
              << ", " << list[i].first << ")";
        }
        if (must_be_live(list.back().second)) {
          IDEM_ASSERT_OK_AND_ASSIGN(RecordInfo info, store->Peek(id));
          ASSERT_EQ(info.state, RecordInfo::State::kDone) << id;
          ASSERT_EQ(info.token, list.back().first) << id;
        }
      }
    }

    const uint64_t highest = tokens.empty() ? 0 : *tokens.rbegin();
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation fresh, store->Reserve("after-cycle-" + std::to_string(cycle)));
    ASSERT_GT(fresh.token, highest) << "tokens went backwards after the crash";
    tokens.insert(fresh.token);
    ++totals->cycles;
  }
}

class TortureTest : public ::testing::TestWithParam<Case> {};

TEST_P(TortureTest, InvariantsHoldAfterEveryKill) {
  Totals totals;
  RunTorture(GetParam(), &totals);
  std::cout << "[ figures  ] " << GetParam().name << ": " << totals.cycles << " cycles, " << totals.reserves
            << " reservations, " << totals.acknowledged << " acknowledged commits (" << totals.checked
            << " within TTL at the check), " << totals.lost << " lost to power loss, " << totals.bytes_dropped
            << " unsynced bytes dropped\n";
}

INSTANTIATE_TEST_SUITE_P(Crash, TortureTest,
                         ::testing::Values(Case{"kill_default_durable", false, true},
                                           Case{"kill_default_in_memory", false, false},
                                           Case{"kill_sync_durable", true, true, false, false, 0, 6},
                                           Case{"kill_sync_in_memory", true, false, false, false, 0, 6}),
                         [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(PowerLoss, TortureTest,
                         ::testing::Values(Case{"power_loss_sync", true, true, true, true, 0, 8},
                                           Case{"power_loss_no_sync", false, true, true, false, 0, 10},
                                           Case{"power_loss_no_sync_torn_wal", false, false, true, true, 0, 10},
                                           Case{"power_loss_wal_sync_interval", false, true, true, true, 100, 8}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace idem
