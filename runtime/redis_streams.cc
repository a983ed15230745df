#include "idem/redis_streams.h"

#include <string>
#include <utility>

namespace idem {

absl::StatusOr<std::unique_ptr<RedisStreamsConsumer>> RedisStreamsConsumer::Create(RedisStreamsOptions options,
                                                                                   Processor* processor) {
  if (options.stream.empty() || options.group.empty() || options.consumer.empty()) {
    return absl::InvalidArgumentError("RedisStreamsOptions needs a stream, a group and a consumer name");
  }
  if (processor == nullptr) return absl::InvalidArgumentError("RedisStreamsConsumer needs a Processor");
  if (options.batch == 0) options.batch = 1;
  return std::unique_ptr<RedisStreamsConsumer>(new RedisStreamsConsumer(std::move(options), processor));
}

RedisStreamsConsumer::RedisStreamsConsumer(RedisStreamsOptions options, Processor* processor)
    : options_(std::move(options)), processor_(processor), redis_(options_.host, options_.port) {}

void RedisStreamsConsumer::EnsureGroup() {
  // BUSYGROUP (it exists) is fine.
  RedisReply r = redis_.Command({"XGROUP", "CREATE", options_.stream, options_.group, "0", "MKSTREAM"});
  group_ready_ = r != nullptr;
}

std::vector<StreamEntry> RedisStreamsConsumer::Read(bool* connection_error) {
  const std::string count = std::to_string(options_.batch);
  std::vector<StreamEntry> entries;
  auto read = [&](std::vector<std::string> args) {
    RedisReply r = redis_.Command(args);
    if (r == nullptr) *connection_error = true;
    return r;
  };
  if (!own_pending_done_) {
    // After a restart or a reconnect: what this consumer read but never acknowledged.
    RedisReply r = read(
        {"XREADGROUP", "GROUP", options_.group, options_.consumer, "COUNT", count, "STREAMS", options_.stream, "0"});
    entries = ParseReadGroup(r.get());
    if (r != nullptr && entries.empty()) own_pending_done_ = true;
  }
  const auto now = std::chrono::steady_clock::now();
  if (entries.empty() && !*connection_error &&
      now - last_claim_ >= absl::ToChronoNanoseconds(options_.claim_idle / 2)) {
    last_claim_ = now;
    // Entries idle longer than a lease: their consumer died, or they were left for a retry.
    RedisReply r = read({"XAUTOCLAIM", options_.stream, options_.group, options_.consumer,
                         std::to_string(absl::ToInt64Milliseconds(options_.claim_idle)), "0-0", "COUNT", count});
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2) entries = ParseEntries(r->element[1]);
    // A full batch means more may be waiting (a dead consumer's whole pending list): claim again at once.
    // What was just claimed is not idle any more, so the next claim moves on to the rest.
    if (entries.size() >= options_.batch) last_claim_ = {};
  }
  if (entries.empty() && !*connection_error) {
    RedisReply r = read({"XREADGROUP", "GROUP", options_.group, options_.consumer, "COUNT", count, "BLOCK",
                         std::to_string(absl::ToInt64Milliseconds(options_.block)), "STREAMS", options_.stream, ">"});
    entries = ParseReadGroup(r.get());
  }
  return entries;
}

void RedisStreamsConsumer::DeadLetter(const StreamEntry& entry, const std::string& reason) {
  std::vector<std::string> args = {"XADD",   options_.dead_letters, "*",     "reason", reason,
                                   "stream", options_.stream,       "entry", entry.id};
  for (const auto& [k, v] : entry.fields) {
    args.push_back("field:" + k);
    args.push_back(v.size() > 64 ? v.substr(0, 64) + "..." : v);
  }
  // Acknowledged only once recorded: if either command fails, the entry is read again and dead-lettered
  // again (a dead-letter stream may hold a repeat; it never misses one).
  if (redis_.Command(args) == nullptr) return;
  if (redis_.Command({"XACK", options_.stream, options_.group, entry.id}) == nullptr) return;
  counters_.dead_letters++;
  counters_.acked++;
}

absl::StatusOr<size_t> RedisStreamsConsumer::Poll(const EntryToEvent& to_event, const EntryHandler& handler) {
  if (!processor_->healthy()) {
    // The store failed: take nothing until it has recovered (the Processor resumes by itself).
    processor_->AwaitHealthy(absl::Milliseconds(200)).IgnoreError();
    return 0;
  }
  if (!redis_.ok() || !group_ready_) {
    // Redis went away (restarted, unreachable): wait for it without spinning, then pick up where the
    // group left off, own pending entries first.
    const bool was_down = !redis_.ok();
    if (!redis_.AwaitConnected()) return absl::UnavailableError("redis is unreachable: " + redis_.error());
    if (was_down) counters_.reconnects++;
    EnsureGroup();
    own_pending_done_ = false;
    if (!group_ready_) return absl::UnavailableError("redis is unreachable: " + redis_.error());
  }
  bool connection_error = false;
  std::vector<StreamEntry> entries = Read(&connection_error);
  if (connection_error && entries.empty()) return absl::UnavailableError("redis connection lost: " + redis_.error());
  if (entries.empty()) return 0;
  counters_.deliveries += entries.size();

  std::vector<const StreamEntry*> valid;
  std::vector<Event> events;
  for (const StreamEntry& e : entries) {
    std::string why;
    std::optional<Event> event = to_event(e, &why);
    if (!event) {
      DeadLetter(e, "invalid: " + why);
      continue;
    }
    valid.push_back(&e);
    events.push_back(*event);
  }
  if (options_.before_handle) options_.before_handle(entries.size());
  // The Processor calls the handler in batch order, so `next` finds each event's entry in one pass.
  size_t next = 0;
  const Handler apply = [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
    while (next < valid.size() && events[next].id != ctx.event_id) ++next;
    if (next == valid.size()) return absl::InternalError("handler called for an event not in the batch");
    return handler(*valid[next], ctx);
  };
  std::vector<HandleResult> results = processor_->HandleBatch(events, apply);
  if (options_.before_ack) options_.before_ack(entries.size());
  for (size_t i = 0; i < results.size(); ++i) {
    const StreamEntry& e = *valid[i];
    if (results[i].ShouldAck()) {
      if (redis_.Command({"XACK", options_.stream, options_.group, e.id}) != nullptr) counters_.acked++;
    } else if (results[i].DeadLetter()) {
      DeadLetter(e, std::string(OutcomeName(results[i].outcome)) + ": " + std::string(results[i].status.message()));
    }
    // Otherwise (retry later, lease lost, unavailable) the entry stays pending and is read or claimed again.
  }
  return entries.size();
}

absl::StatusOr<uint64_t> RedisStreamsConsumer::Pending() {
  RedisReply r = redis_.Command({"XPENDING", options_.stream, options_.group});
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->element[0]->type != REDIS_REPLY_INTEGER) {
    return absl::UnavailableError("XPENDING failed: " + redis_.error());
  }
  return static_cast<uint64_t>(r->element[0]->integer);
}

}  // namespace idem
