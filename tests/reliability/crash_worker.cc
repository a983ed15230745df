// A consumer process for the crash tests. It reserves and commits IDs (each commit carrying a ledger
// effect) as fast as it can and reports on stdout, line by line, what was acknowledged:
//   R <id> <token>   Reserve returned kReserved
//   C <id> <token>   Commit returned OK
// The parent kills it with SIGKILL at a random moment and checks the store against these lines.
// "hold": opens the store and waits. "inflight N": makes N durable reservations, prints
// "I <id> <token>" for each and "ready", then waits with all of them in flight.
// Usage: crash_worker <db-path> <first-id> <sync:0|1> [hold | inflight N]
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/time/clock.h"
#include "idem/store.h"
#include "rocksdb/write_batch.h"
#include "tests/support/ledger_db.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s <db-path> <first-id> <sync:0|1> [hold]\n", argv[0]);
    return 2;
  }
  idem::Options options;
  options.sync = std::string(argv[3]) == "1";
  options.maintenance_interval = absl::Milliseconds(20);
  const bool inflight = argc > 5 && std::string(argv[4]) == "inflight";
  options.durable_reservations = inflight;
  idem::testing::LedgerDb db(argv[1], idem::ColumnFamilyOptionsFor(options));
  if (!db.status.ok()) {
    std::fprintf(stderr, "open: %s\n", db.status.ToString().c_str());
    return 1;
  }
  auto store = idem::Store::Attach(db.db.get(), db.idem(), options);
  if (!store.ok()) {
    std::fprintf(stderr, "attach: %s\n", store.status().ToString().c_str());
    return 1;
  }
  if (inflight) {
    for (long i = 0; i < std::atol(argv[5]); ++i) {
      const std::string id = "inflight-" + std::to_string(i);
      absl::StatusOr<idem::Reservation> r = (*store)->Reserve(id);
      if (!r.ok() || r->verdict != idem::Verdict::kReserved) {
        std::fprintf(stderr, "reserve: %s\n", r.status().ToString().c_str());
        return 1;
      }
      std::printf("I %s %llu\n", id.c_str(), static_cast<unsigned long long>(r->token));
    }
  }
  if (inflight || (argc > 4 && std::string(argv[4]) == "hold")) {
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) absl::SleepFor(absl::Seconds(1));
  }
  for (long i = std::atol(argv[2]);; ++i) {
    const std::string id = "event-" + std::to_string(i);
    absl::StatusOr<idem::Reservation> r = (*store)->Reserve(id);
    if (!r.ok()) {
      std::fprintf(stderr, "reserve: %s\n", r.status().ToString().c_str());
      return 1;
    }
    if (r->verdict != idem::Verdict::kReserved) continue;
    std::printf("R %s %llu\n", id.c_str(), static_cast<unsigned long long>(r->token));
    if (i % 7 == 0) {  // some handlers fail: their IDs are released for a retry
      if (!(*store)->Release(id, r->token).ok()) return 1;
      continue;
    }
    rocksdb::WriteBatch effects;
    effects.Put(db.ledger(), id, std::to_string(r->token));
    if (absl::Status s = (*store)->Commit(id, r->token, "ok", &effects); !s.ok()) {
      std::fprintf(stderr, "commit: %s\n", s.ToString().c_str());
      return 1;
    }
    std::printf("C %s %llu\n", id.c_str(), static_cast<unsigned long long>(r->token));
    std::fflush(stdout);
  }
}
