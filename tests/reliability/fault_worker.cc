// The process for the random-fault test: reserves and commits a stream of IDs on a store whose file
// system fails one append, sync or open in N (testing/fault_fs.h), calling Resume after every failure.
// It prints, one flushed line per fact:
//   C <id>   Commit returned OK
//   N <id>   reserved and deliberately never committed
// and "done <faults injected> <failed calls>" at the end. It runs in its own process because Debian's
// RocksDB keeps its assertions, and one of them (WritableFileWriter's "previous error") can abort the
// process after some fault sequences: the test then checks what a crash must preserve.
// Usage: fault_worker <db> <io|nospace> <durable:0|1> <one-in> <seed> <events>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "idem/store.h"
#include "testing/fault_fs.h"

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s <db> <io|nospace> <durable> <one-in> <seed> <events>\n", argv[0]);
    return 2;
  }
  auto fs = std::make_shared<idem::testing::FaultFs>();
  std::unique_ptr<rocksdb::Env> env = idem::testing::EnvOver(fs);
  idem::Options options;
  options.env = env.get();
  options.maintenance_interval = absl::ZeroDuration();
  options.durable_reservations = std::string(argv[3]) == "1";
  auto opened = idem::Store::Open(options, argv[1]);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  idem::Store& store = **opened;
  const idem::testing::Fault fault =
      std::string(argv[2]) == "io" ? idem::testing::Fault::kIoError : idem::testing::Fault::kNoSpace;
  fs->ArmRandomly(fault, idem::testing::kWrites | idem::testing::kOpen, std::strtoull(argv[4], nullptr, 10),
                  std::strtoull(argv[5], nullptr, 10));
  int failures = 0;
  auto recover = [&] {
    ++failures;
    for (int attempt = 0; attempt < 200 && !store.Resume().ok(); ++attempt) {
    }
  };
  const int events = std::atoi(argv[6]);
  for (int i = 0; i < events; ++i) {
    const std::string id = "random-" + std::to_string(i);
    absl::StatusOr<idem::Reservation> r = store.Reserve(id);
    if (!r.ok()) {
      if (r.status().code() != absl::StatusCode::kUnavailable) {
        std::fprintf(stderr, "reserve: unexpected %s\n", r.status().ToString().c_str());
        return 1;
      }
      recover();
      continue;
    }
    if (r->verdict != idem::Verdict::kReserved) continue;
    if (i % 5 == 0) {
      std::printf("N %s\n", id.c_str());
      std::fflush(stdout);
      continue;
    }
    absl::Status s = store.Commit(id, r->token, "ok");
    if (s.ok()) {
      std::printf("C %s\n", id.c_str());
      std::fflush(stdout);
    } else if (s.code() != absl::StatusCode::kUnavailable) {
      std::fprintf(stderr, "commit: unexpected %s\n", s.ToString().c_str());
      return 1;
    } else {
      recover();
    }
  }
  fs->Clear();
  if (!store.Resume().ok()) return 1;
  std::printf("done %llu %d\n", static_cast<unsigned long long>(fs->injected()), failures);
  std::fflush(stdout);
  return 0;
}
