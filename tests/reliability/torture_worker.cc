// The process the torture tests kill: a mixed consumer workload on a store with a short TTL, so that IDs
// expire and are compacted away while it runs. Each loop step is one of: a single event (reserve, then
// commit with a ledger effect, or release as a failed handler would), a polled batch (ReserveBatch +
// CommitBatch), a redelivery of a recent or an old ID. A second thread compacts expired records now
// and then, beside idem's maintenance thread and RocksDB's own background compactions.
//
// It reports on stdout, one flushed line per acknowledged call:
//   R <id> <token>             reserved
//   C <id> <token> <start_us>  committed (start_us: wall time just before Commit/CommitBatch was called)
//   X <id> <token>             released
//
// Usage: torture_worker <db> <first-id> <seed> <sync:0|1> <durable:0|1> <ttl-ms> <journal|-> <wal-sync-ms>
// A journal path puts the store on PowerLossFs (testing/power_loss_fs.h); "-" uses the real file system.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "idem/store.h"
#include "rocksdb/write_batch.h"
#include "testing/power_loss_fs.h"
#include "tests/support/ledger_db.h"

namespace {

int Fail(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "torture_worker: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 9) {
    std::fprintf(stderr, "usage: %s <db> <first-id> <seed> <sync> <durable> <ttl-ms> <journal|-> <wal-sync-ms>\n",
                 argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const long first_id = std::atol(argv[2]);
  std::mt19937_64 rng(std::strtoull(argv[3], nullptr, 10));

  idem::Options options;
  options.sync = std::string(argv[4]) == "1";
  options.durable_reservations = std::string(argv[5]) == "1";
  options.ttl = absl::Milliseconds(std::atol(argv[6]));
  options.lease = options.ttl / 4;
  options.maintenance_interval = absl::Milliseconds(20);
  options.wal_sync_interval = absl::Milliseconds(std::atol(argv[8]));
  options.write_buffer_size = 256 << 10;  // frequent flushes and WAL switches: more files, more states

  std::shared_ptr<idem::testing::PowerLossFs> fs;
  std::unique_ptr<rocksdb::Env> env;
  if (std::string(argv[7]) != "-") {
    fs = std::make_shared<idem::testing::PowerLossFs>(argv[7]);
    if (!fs->ok()) return Fail("journal", absl::InternalError(argv[7]));
    env = rocksdb::NewCompositeEnv(fs);
  }
  rocksdb::ColumnFamilyOptions cf_options = idem::ColumnFamilyOptionsFor(options);
  idem::testing::LedgerDb db(path, cf_options, env.get());
  if (!db.status.ok()) return Fail("open", absl::InternalError(db.status.ToString()));
  auto opened = idem::Store::Attach(db.db.get(), db.idem(), options);
  if (!opened.ok()) return Fail("attach", opened.status());
  idem::Store& store = **opened;

  std::atomic<bool> stop{false};
  std::thread compactor([&] {
    while (!stop.load()) {
      absl::SleepFor(absl::Milliseconds(50));
      if (absl::Status s = store.CompactExpired(); !s.ok()) {
        Fail("compact", s);
        std::_Exit(1);
      }
    }
  });

  long next_id = first_id;
  auto pick_id = [&]() -> std::string {
    const uint64_t r = rng() % 100;
    long id = next_id;
    if (r < 15 && next_id > first_id + 50) {
      id = next_id - 1 - static_cast<long>(rng() % 50);  // a recent redelivery: duplicate or in flight
    } else if (r < 20 && next_id > 1000) {
      id = static_cast<long>(rng() % static_cast<uint64_t>(next_id));  // an old one: maybe expired
    } else {
      ++next_id;
    }
    return "event-" + std::to_string(id);
  };
  auto commit_line = [](const std::string& id, uint64_t token, int64_t start_us) {
    std::printf("C %s %llu %lld\n", id.c_str(), static_cast<unsigned long long>(token),
                static_cast<long long>(start_us));
  };

  for (;;) {
    if (rng() % 4 != 0) {
      const std::string id = pick_id();
      absl::StatusOr<idem::Reservation> r = store.Reserve(id);
      if (!r.ok()) return Fail("reserve", r.status());
      if (r->verdict != idem::Verdict::kReserved) continue;
      std::printf("R %s %llu\n", id.c_str(), static_cast<unsigned long long>(r->token));
      std::fflush(stdout);
      if (rng() % 8 == 0) {  // the handler failed
        if (absl::Status s = store.Release(id, r->token); !s.ok()) return Fail("release", s);
        std::printf("X %s %llu\n", id.c_str(), static_cast<unsigned long long>(r->token));
        std::fflush(stdout);
        continue;
      }
      const int64_t start_us = absl::ToUnixMicros(absl::Now());
      rocksdb::WriteBatch effects;
      effects.Put(db.ledger(), id + "/" + std::to_string(r->token), std::to_string(start_us));
      if (absl::Status s = store.Commit(id, r->token, "ok", &effects); !s.ok()) return Fail("commit", s);
      commit_line(id, r->token, start_us);
      std::fflush(stdout);
      continue;
    }
    // A polled batch.
    std::vector<std::string> ids;
    for (int i = 0; i < 8; ++i) ids.push_back(pick_id());
    std::vector<std::string_view> views(ids.begin(), ids.end());
    std::vector<absl::StatusOr<idem::Reservation>> reservations = store.ReserveBatch(views);
    std::vector<idem::CommitRequest> requests;
    std::vector<std::unique_ptr<rocksdb::WriteBatch>> effects;
    const int64_t start_us = absl::ToUnixMicros(absl::Now());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!reservations[i].ok()) return Fail("reserve batch", reservations[i].status());
      if (reservations[i]->verdict != idem::Verdict::kReserved) continue;
      std::printf("R %s %llu\n", ids[i].c_str(), static_cast<unsigned long long>(reservations[i]->token));
      effects.push_back(std::make_unique<rocksdb::WriteBatch>());
      effects.back()->Put(db.ledger(), ids[i] + "/" + std::to_string(reservations[i]->token), std::to_string(start_us));
      requests.push_back({ids[i], reservations[i]->token, "ok", effects.back().get()});
    }
    std::fflush(stdout);
    std::vector<absl::Status> statuses = store.CommitBatch(requests);
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!statuses[i].ok()) return Fail("commit batch", statuses[i]);
      commit_line(std::string(requests[i].id), requests[i].token, start_us);
    }
    std::fflush(stdout);
  }
}
