// A consumer of one partition of the event stream, on idem's Redis Streams adapter
// (include/idem/redis_streams.h): each event runs through the Processor (effect: a ledger entry in the
// same RocksDB, committed atomically with the done marker), only what was committed is acknowledged,
// poison is dead-lettered, entries left pending by a dead consumer are claimed once their lease can have
// ended, and a Redis restart is waited out. What is left here is the example's own: its event layout,
// crash points and storage faults for the tests, and a stats file for the demo's report.
//
// Usage: consumer --port=P --partition=K --db=DIR [--batch=16] [--lease-ms=2000] [--idle-exit-ms=1500]
//                 [--crash-at=before-reserve|after-reserve|after-commit|mid-batch --crash-after=N]
//                 [--fault=io|nospace --fault-after=N --fault-ms=M]
// Writes its counters to DIR/stats-K-<pid>.txt (every 200 ms and at exit) for the demo's report.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "examples/redis_streams/layout.h"
#include "idem/processor.h"
#include "idem/redis_streams.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "testing/fault_fs.h"
#include "testing/flags.h"

namespace {

void WriteStats(const std::string& path, const idem::RedisStreamsConsumer::Counters& c, uint64_t handler_calls,
                const idem::ProcessorStats& s) {
  std::ofstream out(path + ".tmp");
  out << "deliveries " << c.deliveries << "\nacked " << c.acked << "\ndead_letters " << c.dead_letters
      << "\nhandler_calls " << handler_calls << "\napplied " << s.applied << "\nduplicates " << s.duplicates
      << "\nretry_later " << s.retry_later << "\nconflicts " << s.conflicts << "\ntakeovers " << s.store.takeovers
      << "\nlease_lost " << s.lease_lost << "\nunavailable " << s.unavailable << "\npauses " << s.pauses << "\nresumes "
      << s.resumes << "\nstep_p50_ns " << absl::ToInt64Nanoseconds(s.step_latency.p50) << "\nstep_p99_ns "
      << absl::ToInt64Nanoseconds(s.step_latency.p99) << "\nstep_count " << s.step_latency.count
      << "\nredis_reconnects " << c.reconnects << "\n";
  out.close();
  std::rename((path + ".tmp").c_str(), path.c_str());
}

uint64_t NowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A consumer of one partition stream: each event applied to the ledger exactly once", "stream_consumer"};
  int port = 6379, partition = 0;
  std::string dir = "/tmp/idem-consumer", crash_at, fault;
  long lease_ms = 2000, crash_after = 100, fault_after = 100, fault_ms = 500, batch = 16;
  uint64_t idle_exit_ms = 1500;
  app.add_option("--port", port, "Redis port");
  app.add_option("--partition", partition, "the partition stream to consume");
  app.add_option("--db", dir, "the store's directory");
  app.add_option("--lease-ms", lease_ms, "reservation lease");
  app.add_option("--idle-exit-ms", idle_exit_ms, "exit after this long with nothing to read");
  app.add_option("--crash-at", crash_at, "SIGKILL itself at this point of an event's handling");
  app.add_option("--crash-after", crash_after, "... after this many events");
  app.add_option("--fault", fault, "inject storage faults of this kind (io, nospace)");
  app.add_option("--fault-after", fault_after, "... after this many events");
  app.add_option("--fault-ms", fault_ms, "... for this long");
  app.add_option("--batch", batch, "events read per XREADGROUP");
  if (const int exit_code = idem::flags::Parse(app, argc, argv); exit_code >= 0) return exit_code;
  const absl::Duration lease = absl::Milliseconds(lease_ms);
  const absl::Duration fault_for = absl::Milliseconds(fault_ms);
  const std::string name = "consumer-" + std::to_string(partition);
  const std::string stats_path = dir + "/stats-" + std::to_string(partition) + "-" + std::to_string(getpid()) + ".txt";

  // The store, on a file system the tests can make fail.
  auto fs = std::make_shared<idem::testing::FaultFs>();
  std::unique_ptr<rocksdb::Env> env = idem::testing::EnvOver(fs);
  idem::Options options;
  options.lease = lease;
  options.ttl = absl::Hours(1);
  options.durable_reservations = true;  // a restarted consumer takes over what its predecessor left, at once
  options.env = env.get();
  auto opened = idem::Store::Open(options, dir + "/part-" + std::to_string(partition));
  if (!opened.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<idem::Store> store = std::move(*opened);
  idem::ProcessorOptions processor_options;
  processor_options.lease = lease;
  processor_options.backoff_initial = absl::Milliseconds(20);
  processor_options.backoff_max = absl::Milliseconds(500);
  idem::Processor processor(store.get(), processor_options);

  // Crash points: SIGKILL at a given step once enough has happened.
  std::atomic<uint64_t> handler_calls{0};
  uint64_t deliveries_seen = 0;
  auto crash_if = [&](const char* point, uint64_t n) {
    if (crash_at == point && static_cast<long>(n) >= crash_after) {
      std::fprintf(stderr, "%s: crashing at %s (%llu)\n", name.c_str(), point, static_cast<unsigned long long>(n));
      std::fflush(stderr);
      raise(SIGKILL);
    }
  };

  idem::RedisStreamsOptions stream_options;
  stream_options.port = port;
  stream_options.stream = idem::example::StreamName(partition);
  stream_options.group = idem::example::kGroup;
  stream_options.consumer = name;
  stream_options.batch = static_cast<size_t>(batch);
  stream_options.claim_idle = lease;
  stream_options.dead_letters = idem::example::kDeadLetters;
  stream_options.before_handle = [&](size_t n) {
    deliveries_seen += n;
    crash_if("before-reserve", deliveries_seen);
  };
  stream_options.before_ack = [&](size_t) { crash_if("after-commit", deliveries_seen); };
  auto consumer = idem::RedisStreamsConsumer::Create(stream_options, &processor);
  if (!consumer.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), consumer.status().ToString().c_str());
    return 1;
  }

  // Storage faults: armed after N deliveries, cleared after M ms.
  std::atomic<bool> fault_armed{false};
  std::thread fault_clearer;
  // The event: its ID and a fingerprint of its payload (a reused ID with another payload is a conflict).
  const idem::EntryToEvent to_event = [&](const idem::StreamEntry& e, std::string* why) -> std::optional<idem::Event> {
    if (!fault.empty() && !fault_armed && static_cast<long>((*consumer)->counters().deliveries) >= fault_after) {
      fault_armed = true;
      fs->Arm(fault == "nospace" ? idem::testing::Fault::kNoSpace : idem::testing::Fault::kIoError);
      std::fprintf(stderr, "%s: storage fault '%s' injected for %lld ms\n", name.c_str(), fault.c_str(),
                   static_cast<long long>(absl::ToInt64Milliseconds(fault_for)));
      fault_clearer = std::thread([&fs, fault_for] {
        absl::SleepFor(fault_for);
        fs->Clear();
      });
    }
    if (!e.Has("event_id") || e.Field("event_id").empty()) {
      *why = "no event_id";
      return std::nullopt;
    }
    return idem::Event(e.Field("event_id"), idem::example::Fingerprint(e.Field("account"), e.Field("amount")));
  };
  // The effect: one ledger entry per application, keyed by event and fencing token, so that a double
  // application (two tokens) would be visible to the verifier. An amount that is not a positive integer
  // is poison.
  const idem::EntryHandler apply = [&](const idem::StreamEntry& e,
                                       const idem::EventContext& ctx) -> absl::StatusOr<std::string> {
    const uint64_t calls = ++handler_calls;
    crash_if("after-reserve", calls);
    if (stream_options.batch > 1) crash_if("mid-batch", calls);
    int64_t amount = 0;
    if (!absl::SimpleAtoi(e.Field("amount"), &amount) || amount <= 0) {
      return absl::InvalidArgumentError("amount is not a positive integer: " + e.Field("amount"));
    }
    ctx.effects->Put(store->db()->DefaultColumnFamily(),
                     "applied/" + std::string(ctx.event_id) + "/" + std::to_string(ctx.token),
                     e.Field("account") + ":" + std::to_string(amount));
    return "applied by token " + std::to_string(ctx.token);
  };

  uint64_t last_activity_ms = NowMs(), last_stats_ms = 0;
  bool reported_down = false;
  for (;;) {
    absl::StatusOr<size_t> handled = (*consumer)->Poll(to_event, apply);
    if (!handled.ok()) {
      if (!reported_down)
        std::fprintf(stderr, "%s: %s; reconnecting\n", name.c_str(), handled.status().ToString().c_str());
      reported_down = true;
      last_activity_ms = NowMs();
      continue;
    }
    reported_down = false;
    if (NowMs() - last_stats_ms > 200) {
      WriteStats(stats_path, (*consumer)->counters(), handler_calls, processor.GetStats());
      last_stats_ms = NowMs();
    }
    if (*handled > 0 || !processor.healthy()) {
      last_activity_ms = NowMs();
      continue;
    }
    if (NowMs() - last_activity_ms > idle_exit_ms) {
      // Drained: nothing new for a while and nothing left pending in the group.
      absl::StatusOr<uint64_t> pending = (*consumer)->Pending();
      if (pending.ok() && *pending == 0) break;
      last_activity_ms = NowMs();
    }
  }
  if (fault_clearer.joinable()) fault_clearer.join();
  WriteStats(stats_path, (*consumer)->counters(), handler_calls, processor.GetStats());
  std::fprintf(stderr, "%s: drained after %llu deliveries\n", name.c_str(),
               static_cast<unsigned long long>((*consumer)->counters().deliveries));
  return 0;
}
