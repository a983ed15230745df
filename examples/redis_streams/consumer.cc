// A consumer of one partition of the event stream: reads with a consumer group, runs each event through
// idem's Processor (effect: a ledger entry in the same RocksDB, committed atomically with the done
// marker), acknowledges only what was committed, dead-letters poison, and claims entries left pending
// by a dead consumer once their lease can have ended (XAUTOCLAIM, min-idle = lease).
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
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "examples/redis_streams/flags.h"
#include "examples/redis_streams/redis.h"
#include "idem/consumer.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "testing/fault_fs.h"

namespace {

using idem::example::Flags;
using idem::example::Redis;
using idem::example::StreamEntry;

struct Counters {
  uint64_t deliveries = 0, acked = 0, dead_letters = 0, handler_calls = 0, redis_reconnects = 0;
};

void WriteStats(const std::string& path, const Counters& c, const idem::ProcessorStats& s) {
  std::ofstream out(path + ".tmp");
  out << "deliveries " << c.deliveries << "\nacked " << c.acked << "\ndead_letters " << c.dead_letters << "\napplied "
      << s.applied << "\nduplicates " << s.duplicates << "\nretry_later " << s.retry_later << "\nconflicts "
      << s.conflicts << "\ntakeovers " << s.store.takeovers << "\nlease_lost " << s.lease_lost << "\nunavailable "
      << s.unavailable << "\npauses " << s.pauses << "\nresumes " << s.resumes << "\nstep_p50_ns "
      << absl::ToInt64Nanoseconds(s.step_latency.p50) << "\nstep_p99_ns "
      << absl::ToInt64Nanoseconds(s.step_latency.p99) << "\nstep_count " << s.step_latency.count
      << "\nredis_reconnects " << c.redis_reconnects << "\n";
  out.close();
  std::rename((path + ".tmp").c_str(), path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags(argc, argv);
  const int port = static_cast<int>(flags.Int("port", 6379));
  const int partition = static_cast<int>(flags.Int("partition", 0));
  const std::string dir = flags.Get("db", "/tmp/idem-consumer");
  const long batch = flags.Int("batch", 16);
  const absl::Duration lease = absl::Milliseconds(flags.Int("lease-ms", 2000));
  const absl::Duration idle_exit = absl::Milliseconds(flags.Int("idle-exit-ms", 1500));
  const std::string crash_at = flags.Get("crash-at");
  const long crash_after = flags.Int("crash-after", 100);
  const std::string fault = flags.Get("fault");
  const long fault_after = flags.Int("fault-after", 100);
  const absl::Duration fault_for = absl::Milliseconds(flags.Int("fault-ms", 500));
  const std::string stream = idem::example::StreamName(partition);
  const std::string name = "consumer-" + std::to_string(partition);
  const std::string stats_path = dir + "/stats-" + std::to_string(partition) + "-" + std::to_string(getpid()) + ".txt";

  Redis redis("127.0.0.1", port);
  if (!redis.AwaitConnected(std::chrono::seconds(5))) {
    std::fprintf(stderr, "%s: cannot connect to redis: %s\n", name.c_str(), redis.error().c_str());
    return 1;
  }
  redis.Command({"XGROUP", "CREATE", stream, idem::example::kGroup, "0", "MKSTREAM"});  // BUSYGROUP is fine

  auto fs = std::make_shared<idem::testing::FaultFs>();
  std::unique_ptr<rocksdb::Env> env = idem::testing::EnvOver(fs);
  idem::Options options;
  options.lease = lease;
  options.ttl = absl::Hours(1);
  options.durable_reservations = true;  // a restarted consumer finds its predecessor's leases in flight
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

  Counters counters;
  auto crash_if = [&](const char* point, uint64_t n) {
    if (crash_at == point && static_cast<long>(n) >= crash_after) {
      std::fprintf(stderr, "%s: crashing at %s (delivery %llu)\n", name.c_str(), point,
                   static_cast<unsigned long long>(n));
      std::fflush(stderr);
      raise(SIGKILL);
    }
  };
  std::atomic<bool> fault_armed{false};
  std::thread fault_clearer;

  uint64_t last_activity_ms = 0;
  auto now_ms = [] {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
  };
  last_activity_ms = now_ms();
  uint64_t last_stats_ms = 0;
  bool own_pending_done = false;
  uint64_t last_claim_ms = 0;

  bool redis_lost = false;
  for (;;) {
    if (!processor.healthy()) {
      processor.AwaitHealthy(absl::Milliseconds(200)).IgnoreError();
      continue;
    }
    if (!redis.ok()) {
      // Redis went away (restarted, unreachable): wait for it without spinning, then pick up where the
      // group left off. What was read and not acknowledged is read again (own pending entries first);
      // idem answers what was already applied as a duplicate.
      if (!redis_lost) {
        std::fprintf(stderr, "%s: redis connection lost (%s); reconnecting\n", name.c_str(), redis.error().c_str());
        redis_lost = true;
      }
      if (!redis.AwaitConnected()) continue;
      std::fprintf(stderr, "%s: redis connection back\n", name.c_str());
      redis_lost = false;
      redis.Command({"XGROUP", "CREATE", stream, idem::example::kGroup, "0", "MKSTREAM"});
      own_pending_done = false;
      last_activity_ms = now_ms();
      counters.redis_reconnects++;
      continue;
    }
    std::vector<StreamEntry> entries;
    if (!own_pending_done) {
      // After a restart: what this consumer name read but never acknowledged.
      entries = idem::example::ParseReadGroup(redis
                                                  .Command({"XREADGROUP", "GROUP", idem::example::kGroup, name, "COUNT",
                                                            std::to_string(batch), "STREAMS", stream, "0"})
                                                  .get());
      if (entries.empty()) own_pending_done = true;
    }
    if (entries.empty() && now_ms() - last_claim_ms >= static_cast<uint64_t>(absl::ToInt64Milliseconds(lease) / 2)) {
      last_claim_ms = now_ms();
      // Entries idle longer than a lease: their consumer died, or they were left for a retry.
      auto claimed =
          redis.Command({"XAUTOCLAIM", stream, idem::example::kGroup, name,
                         std::to_string(absl::ToInt64Milliseconds(lease)), "0-0", "COUNT", std::to_string(batch)});
      if (claimed && claimed->type == REDIS_REPLY_ARRAY && claimed->elements >= 2) {
        entries = idem::example::ParseEntries(claimed->element[1]);
      }
      // A full batch means more may be waiting (e.g. a dead consumer's whole pending list): claim again
      // at once instead of half a lease later. What was just claimed is not idle any more, so the next
      // claim moves on to the rest.
      if (entries.size() >= static_cast<size_t>(batch)) last_claim_ms = 0;
    }
    if (entries.empty()) {
      entries =
          idem::example::ParseReadGroup(redis
                                            .Command({"XREADGROUP", "GROUP", idem::example::kGroup, name, "COUNT",
                                                      std::to_string(batch), "BLOCK", "100", "STREAMS", stream, ">"})
                                            .get());
    }
    if (now_ms() - last_stats_ms > 200) {
      WriteStats(stats_path, counters, processor.GetStats());
      last_stats_ms = now_ms();
    }
    if (entries.empty()) {
      if (now_ms() - last_activity_ms > static_cast<uint64_t>(absl::ToInt64Milliseconds(idle_exit))) {
        auto pending = redis.Command({"XPENDING", stream, idem::example::kGroup});
        const bool none_pending = pending && pending->type == REDIS_REPLY_ARRAY && pending->elements > 0 &&
                                  pending->element[0]->type == REDIS_REPLY_INTEGER && pending->element[0]->integer == 0;
        if (none_pending) break;  // drained: nothing new for a while and nothing left pending
        last_activity_ms = now_ms();
      }
      continue;
    }
    last_activity_ms = now_ms();

    // Poison without an event ID cannot even be reserved: dead-letter it at once.
    std::vector<const StreamEntry*> valid;
    auto dead_letter = [&](const StreamEntry& e, const std::string& reason) {
      std::vector<std::string> args = {
          "XADD", idem::example::kDeadLetters, "*", "reason", reason, "stream", stream, "entry", e.id};
      for (const auto& [k, v] : e.fields) {
        args.push_back("field:" + k);
        args.push_back(v.size() > 64 ? v.substr(0, 64) + "..." : v);
      }
      redis.Command(args);
      redis.Command({"XACK", stream, idem::example::kGroup, e.id});
      counters.dead_letters++;
      counters.acked++;
    };
    for (const StreamEntry& e : entries) {
      counters.deliveries++;
      if (!fault.empty() && !fault_armed && static_cast<long>(counters.deliveries) >= fault_after) {
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
        dead_letter(e, "invalid: no event_id");
      } else {
        valid.push_back(&e);
      }
    }
    crash_if("before-reserve", counters.deliveries);
    std::vector<idem::Event> events;
    for (const StreamEntry* e : valid) {
      events.emplace_back(e->Field("event_id"), idem::example::Fingerprint(e->Field("account"), e->Field("amount")));
    }
    // The effect: one ledger entry per application, keyed by event and fencing token, so that a double
    // application (two tokens) would be visible to the verifier. An amount that is not a positive
    // integer is poison. The handler is called in batch order, so `next` finds the entry in one pass.
    size_t next = 0;
    const idem::Handler apply = [&](const idem::EventContext& ctx) -> absl::StatusOr<std::string> {
      counters.handler_calls++;
      crash_if("after-reserve", counters.handler_calls);
      if (batch > 1) crash_if("mid-batch", counters.handler_calls);
      while (next < valid.size() && valid[next]->Field("event_id") != ctx.event_id) ++next;
      if (next == valid.size()) return absl::InternalError("handler called for an event not in the batch");
      const StreamEntry& e = *valid[next];
      int64_t amount = 0;
      if (!absl::SimpleAtoi(e.Field("amount"), &amount) || amount <= 0) {
        return absl::InvalidArgumentError("amount is not a positive integer: " + e.Field("amount"));
      }
      ctx.effects->Put(store->db()->DefaultColumnFamily(),
                       "applied/" + std::string(ctx.event_id) + "/" + std::to_string(ctx.token),
                       e.Field("account") + ":" + std::to_string(amount));
      return "applied by token " + std::to_string(ctx.token);
    };
    std::vector<idem::HandleResult> results = processor.HandleBatch(events, apply);
    crash_if("after-commit", counters.deliveries);
    for (size_t i = 0; i < results.size(); ++i) {
      const StreamEntry& e = *valid[i];
      if (results[i].ShouldAck()) {
        redis.Command({"XACK", stream, idem::example::kGroup, e.id});
        counters.acked++;
      } else if (results[i].DeadLetter()) {
        dead_letter(
            e, std::string(idem::OutcomeName(results[i].outcome)) + ": " + std::string(results[i].status.message()));
      }
      // Otherwise (retry later, lease lost, unavailable) the entry stays pending and is claimed again.
    }
  }
  if (fault_clearer.joinable()) fault_clearer.join();
  WriteStats(stats_path, counters, processor.GetStats());
  std::fprintf(stderr, "%s: drained after %llu deliveries\n", name.c_str(),
               static_cast<unsigned long long>(counters.deliveries));
  return 0;
}
