// The process for the full-disk test: a consumer (Processor) applying a stream of events to a store on a
// small real file system that the test fills and frees. Each event's effect is a ledger key named by
// the event and the fencing token, so an event applied twice would leave two keys. It prints, one
// flushed line per fact:
//   A <id>   the event was acknowledged (applied, or a duplicate of an applied one)
//   P        the consumer paused (the store refused: disk nearly full, or a storage error)
//   R        the consumer resumed
// and "done" after the last event. Usage: disk_full_worker <db> <events> <min_free_bytes> <write_buffer>
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "idem/processor.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

// An abort (a RocksDB assertion) is what the test exists to catch: say where it came from.
void PrintBacktrace(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

int main(int argc, char** argv) {
  signal(SIGABRT, PrintBacktrace);
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s <db> <events> <min_free_bytes> <write_buffer>\n", argv[0]);
    return 2;
  }
  idem::Options options;
  options.min_free_disk_bytes = std::atoll(argv[3]);
  options.write_buffer_size = static_cast<size_t>(std::atoll(argv[4]));
  options.block_cache_bytes = 1 << 20;
  options.durable_reservations = false;
  absl::StatusOr<std::unique_ptr<idem::Store>> store;
  for (int attempt = 0; attempt < 600; ++attempt) {  // the disk may be full right now
    store = idem::Store::Open(options, argv[1]);
    if (store.ok() || store.status().code() != absl::StatusCode::kUnavailable) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  idem::ProcessorOptions processor_options;
  processor_options.backoff_initial = absl::Milliseconds(5);
  processor_options.backoff_max = absl::Milliseconds(100);
  idem::Processor processor(store->get(), processor_options);
  const std::string payload(512, 'p');
  const int events = std::atoi(argv[2]);
  bool paused = false;
  for (int i = 0; i < events; ++i) {
    const std::string id = "evt-" + std::to_string(i);
    for (;;) {
      idem::HandleResult r = processor.Handle({id}, [&](const idem::EventContext& ctx) -> absl::StatusOr<std::string> {
        ctx.effects->Put((*store)->db()->DefaultColumnFamily(), "ledger/" + id + "/" + std::to_string(ctx.token),
                         payload);
        return "ok";
      });
      if (r.ShouldAck()) {
        if (paused) {
          std::printf("R\n");
          paused = false;
        }
        std::printf("A %s\n", id.c_str());
        std::fflush(stdout);
        break;
      }
      if (r.outcome == idem::Outcome::kUnavailable && !paused) {
        std::printf("P\n");
        std::fflush(stdout);
        paused = true;
      }
      if (r.DeadLetter()) {
        std::fprintf(stderr, "unexpected dead letter %s: %s\n", id.c_str(), r.status.ToString().c_str());
        return 1;
      }
      processor.AwaitHealthy(absl::Milliseconds(20)).IgnoreError();  // a redelivery, a little later
    }
    absl::SleepFor(absl::Microseconds(300));
  }
  std::printf("done\n");
  std::fflush(stdout);
  return 0;
}
