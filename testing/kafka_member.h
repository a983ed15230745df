// One member of the Kafka ledger group, as a process: opens its PartitionSet, runs the KafkaConsumer with
// the ledger handler until SIGTERM/SIGINT, then closes (revoking cleanly, keeping clean copies). Every
// half second, and at the end, it writes its counters to --stats (key value lines, replaced atomically),
// which is what a parent reads from a member it SIGKILLs or SIGSTOPs.
#ifndef IDEM_TESTING_KAFKA_MEMBER_H_
#define IDEM_TESTING_KAFKA_MEMBER_H_

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "idem/kafka.h"
#include "testing/flags.h"
#include "testing/kafka_ledger.h"

namespace idem::ledger {

inline volatile std::sig_atomic_t member_stop = 0;
inline void OnMemberSignal(int) { member_stop = 1; }

// What WriteMemberStats wrote (empty when there is no file yet).
inline std::map<std::string, double> ReadMemberStats(const std::string& path) {
  std::map<std::string, double> out;
  std::ifstream in(path);
  std::string key;
  double value = 0;
  while (in >> key >> value) out[key] = value;
  return out;
}

inline void WriteMemberStats(const std::string& path, const KafkaConsumerStats& s, bool final) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "messages " << s.messages << "\napplied " << s.applied << "\nduplicates " << s.duplicates
        << "\noffset_commits " << s.offset_commits << "\noffset_commits_refused " << s.offset_commits_refused
        << "\nchangelog_records " << s.changelog_records << "\nchangelog_bytes " << s.changelog_bytes << "\nsnapshots "
        << s.snapshots << "\nrestores " << s.restores << "\ncatch_ups " << s.catch_ups << "\nclaims " << s.claims
        << "\nrestored_batches_fenced " << s.restored_batches_fenced << "\ndata_loss_partitions "
        << s.data_loss_partitions << "\nactive_partitions " << s.active_partitions << "\nmax_restore_seconds "
        << s.max_restore_seconds << "\nstep_p50_us " << absl::ToDoubleMicroseconds(s.step_latency.p50)
        << "\nstep_p99_us " << absl::ToDoubleMicroseconds(s.step_latency.p99) << "\nfinal " << (final ? 1 : 0) << "\n";
  }
  std::filesystem::rename(tmp, path);
}

inline int MemberMain(int argc, char** argv) {
  CLI::App app("A member of the Kafka ledger consumer group (idem::KafkaConsumer).");
  KafkaConsumerOptions o;
  std::string state, stats;
  int session_ms = 4000;
  size_t snapshot_bytes = 1 << 20;
  app.add_option("--bootstrap", o.bootstrap_servers, "Kafka bootstrap servers")->required();
  app.add_option("--group", o.group_id, "consumer group")->required();
  app.add_option("--input", o.input_topic, "input topic")->required();
  app.add_option("--changelog", o.changelog_topic, "changelog topic (empty: none)");
  app.add_option("--state", state, "the member's PartitionSet directory")->required();
  app.add_option("--stats", stats, "where to write the member's counters");
  app.add_option("--session-timeout-ms", session_ms, "session.timeout.ms (the mock needs > 3000)");
  app.add_option("--snapshot-bytes", snapshot_bytes, "snapshot once the changelog grew by this much");
  app.add_option("--max-batch", o.max_batch, "messages per poll");
  std::string stall_on, stall_when;
  int delay_us = 0;
  app.add_option("--stall-on", stall_on,
                 "stop this process (SIGSTOP) inside the handler of this event ID, once: a member paused "
                 "mid-batch, as by a long GC pause, to be continued (SIGCONT) by its parent");
  app.add_option("--stall-when", stall_when, "the same, in the first handler call after this file appears");
  app.add_option("--handler-delay-us", delay_us, "work each event costs, in microseconds");
  if (int code = flags::Parse(app, argc, argv); code >= 0) return code;

  std::signal(SIGTERM, OnMemberSignal);
  std::signal(SIGINT, OnMemberSignal);
  o.effect_families = Families();
  o.handler = [inner = Handler(), stall_on, stall_when, delay_us, stats](
                  const KafkaMessage& m, const EventContext& ctx,
                  KafkaPartitionView& view) -> absl::StatusOr<std::string> {
    static bool stalled = false;
    if (!stalled && ((!stall_on.empty() && ctx.event_id == stall_on) ||
                     (!stall_when.empty() && std::filesystem::exists(stall_when)))) {
      stalled = true;
      std::fprintf(stderr, "[member] stalling in %.*s of partition %d (token %llu)\n",
                   static_cast<int>(ctx.event_id.size()), ctx.event_id.data(), m.partition,
                   static_cast<unsigned long long>(ctx.token));
      if (!stats.empty()) {
        std::ofstream(stats + ".stall") << "stall_partition " << m.partition << "\nstall_token " << ctx.token << "\n";
      }
      std::raise(SIGSTOP);
    }
    if (delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    return inner(m, ctx, view);
  };
  o.snapshot_min_bytes = snapshot_bytes;
  o.consumer_config = {{"session.timeout.ms", std::to_string(session_ms)},
                       {"heartbeat.interval.ms", std::to_string(session_ms / 10)},
                       {"max.poll.interval.ms", std::to_string(session_ms + 1000)}};
  const std::string who = std::filesystem::path(state).filename().string();
  o.log = [who](std::string_view line) {
    std::fprintf(stderr, "[%s] %.*s\n", who.c_str(), static_cast<int>(line.size()), line.data());
  };
  PartitionSetOptions so;
  so.block_cache_bytes = 32 << 20;
  so.write_buffer_budget_bytes = 64 << 20;
  absl::StatusOr<std::unique_ptr<PartitionSet>> set = PartitionSet::Open(so, state);
  if (!set.ok()) {
    std::fprintf(stderr, "[%s] opening %s: %s\n", who.c_str(), state.c_str(), set.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<KafkaConsumer>> consumer = KafkaConsumer::Create(o, set->get());
  if (!consumer.ok()) {
    std::fprintf(stderr, "[%s] %s\n", who.c_str(), consumer.status().ToString().c_str());
    return 1;
  }
  auto last = std::chrono::steady_clock::now();
  while (member_stop == 0) {
    absl::StatusOr<size_t> n = (*consumer)->Poll();
    if (!n.ok()) {
      std::fprintf(stderr, "[%s] %s\n", who.c_str(), n.status().ToString().c_str());
      break;
    }
    if (std::chrono::steady_clock::now() - last > std::chrono::milliseconds(500)) {
      WriteMemberStats(stats, (*consumer)->GetStats(), false);
      last = std::chrono::steady_clock::now();
    }
  }
  const absl::Status closed = (*consumer)->Close();
  WriteMemberStats(stats, (*consumer)->GetStats(), true);
  consumer->reset();
  (*set)->Close().IgnoreError();
  if (!closed.ok()) std::fprintf(stderr, "[%s] close: %s\n", who.c_str(), closed.ToString().c_str());
  return 0;
}

}  // namespace idem::ledger

#endif  // IDEM_TESTING_KAFKA_MEMBER_H_
