// The smallest consumer: a handful of deliveries, some of them redeliveries, through idem.
// Prints each verdict, and what a zombie worker gets after its lease was taken over.
// Usage: quickstart [store-dir]
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace {

// Time that moves only when told to, so the demo can show a lease running out without waiting.
class ManualClock : public idem::Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ = absl::Now();
};

const char* Name(idem::Verdict v) {
  switch (v) {
    case idem::Verdict::kReserved: return "reserved (new: handle it)";
    case idem::Verdict::kDuplicate: return "duplicate (skip it)";
    case idem::Verdict::kInFlight: return "in flight (another worker holds it)";
    case idem::Verdict::kConflict: return "conflict (ID reused with another payload)";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  // A store of its own, made here and removed at the end; a path given that exists is refused, never
  // deleted (a program of ours never deletes a directory it did not create).
  const std::string path =
      argc > 1 ? argv[1]
               : (std::filesystem::temp_directory_path() / ("idem-quickstart-" + std::to_string(getpid()))).string();
  if (std::filesystem::exists(path)) {
    std::fprintf(stderr, "quickstart: %s exists; give a path that does not exist yet\n", path.c_str());
    return 2;
  }
  struct RemovedAtExit {
    ~RemovedAtExit() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    std::string path;
  } cleanup{path};
  auto clock = std::make_shared<ManualClock>();
  idem::Options options;
  options.clock = clock;
  options.lease = absl::Seconds(30);
  auto opened = idem::Store::Open(options, path);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  idem::Store& store = **opened;

  int failures = 0;
  const std::vector<std::string> deliveries = {"order-1", "order-2", "order-1", "order-3", "order-2"};
  for (const std::string& id : deliveries) {
    absl::StatusOr<idem::Reservation> r = store.Reserve(id);
    if (!r.ok()) {
      std::fprintf(stderr, "reserve %s: %s\n", id.c_str(), r.status().ToString().c_str());
      return 1;
    }
    std::printf("%-8s -> %s", id.c_str(), Name(r->verdict));
    if (r->verdict == idem::Verdict::kReserved) {
      rocksdb::WriteBatch effects;  // the consumer's own writes, atomic with the done marker
      effects.Put(store.db()->DefaultColumnFamily(), "ledger/" + id, "applied");
      absl::Status s = store.Commit(id, r->token, "receipt-for-" + id, &effects);
      std::printf(", token %llu, commit: %s\n", static_cast<unsigned long long>(r->token), s.ToString().c_str());
      failures += s.ok() ? 0 : 1;
    } else if (r->verdict == idem::Verdict::kDuplicate) {
      std::printf(", stored result \"%s\"\n", r->result.c_str());
    } else {
      std::printf("\n");
    }
  }

  // A worker reserves, stalls past its lease; another takes over; the stalled one is fenced.
  auto slow = store.Reserve("order-4");
  auto busy = store.Reserve("order-4");
  std::printf("order-4  -> %s, then %s\n", Name(slow->verdict), Name(busy->verdict));
  clock->Advance(options.lease + absl::Seconds(1));
  auto taker = store.Reserve("order-4");
  std::printf("order-4  -> after the lease ran out: %s, takeover=%s\n", Name(taker->verdict),
              taker->takeover ? "yes" : "no");
  absl::Status zombie = store.Commit("order-4", slow->token);
  std::printf("order-4  -> the stalled worker's commit: %s\n", zombie.ToString().c_str());
  failures += zombie.code() == absl::StatusCode::kAborted ? 0 : 1;
  failures += store.Commit("order-4", taker->token).ok() ? 0 : 1;

  const idem::Stats stats = store.GetStats();
  std::printf("\nreserved %llu, duplicates %llu, in flight %llu, takeovers %llu, lease lost %llu\n",
              static_cast<unsigned long long>(stats.reserved), static_cast<unsigned long long>(stats.duplicate),
              static_cast<unsigned long long>(stats.in_flight), static_cast<unsigned long long>(stats.takeovers),
              static_cast<unsigned long long>(stats.lease_lost));
  std::printf("reserve latency p50 %s p99 %s\n", absl::FormatDuration(stats.reserve_latency.p50).c_str(),
              absl::FormatDuration(stats.reserve_latency.p99).c_str());
  const bool ok = failures == 0 && stats.duplicate == 2 && stats.takeovers == 1;
  std::printf("%s\n", ok ? "verdicts: OK" : "verdicts: UNEXPECTED");
  return ok ? 0 : 1;
}
