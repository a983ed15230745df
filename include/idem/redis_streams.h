// idem/redis_streams.h — a Redis Streams consumer-group adapter for the Processor.
//
//   idem::RedisStreamsOptions o;  o.stream = "events:0";  o.group = "ledger";  o.consumer = "c-0";
//   auto consumer = idem::RedisStreamsConsumer::Create(o, &processor);
//   for (;;) consumer->Poll(to_event, handler);   // reads, handles exactly once, acks, dead-letters
//
// One Poll: entries this consumer read before and never acknowledged (after a restart or a reconnect),
// else entries of other consumers idle longer than `claim_idle` (XAUTOCLAIM: their consumer died),
// else new entries (XREADGROUP, blocking up to `block`). Entries `to_event` cannot turn into an event,
// and events the Processor ends as dead letters, go to the `dead_letters` stream with the reason and are
// acknowledged; events whose result says ShouldAck are acknowledged after their commit; the others stay
// pending and are read or claimed again. Redis may go away at any time: the connection comes back by
// itself with exponential backoff and full jitter, and nothing is lost (unacknowledged entries are
// redelivered; idem answers what was already applied as a duplicate).
//
// Needs hiredis (Debian libhiredis-dev); built as idem::redis_streams when it is found.
//
// Thread safety: a RedisStreamsConsumer (and a RedisConnection) is used by one thread at a time; run
// one per thread or partition. The Processor it borrows must outlive it.
#ifndef IDEM_REDIS_STREAMS_H_
#define IDEM_REDIS_STREAMS_H_

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/processor.h"

namespace idem {

struct RedisReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using RedisReply = std::unique_ptr<redisReply, RedisReplyDeleter>;

// One connection that comes back by itself: a command on a broken connection (redis-server restarted,
// network cut) fails (nullptr), and the next call reconnects, with exponential backoff and full jitter
// between attempts so that a consumer waiting for Redis neither spins nor hammers it.
class RedisConnection {
 public:
  RedisConnection(std::string host, int port) : host_(std::move(host)), port_(port) { Connect(); }
  ~RedisConnection() {
    if (context_ != nullptr) redisFree(context_);
  }
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  bool ok() const { return context_ != nullptr && context_->err == 0; }
  std::string error() const { return context_ == nullptr ? "no connection" : context_->errstr; }

  // Blocks until connected (true) or `give_up_after` passes (false), waiting between attempts.
  bool AwaitConnected(std::chrono::milliseconds give_up_after = std::chrono::milliseconds(1000)) {
    const auto end = std::chrono::steady_clock::now() + give_up_after;
    while (!ok()) {
      const auto wait = Backoff();
      if (std::chrono::steady_clock::now() + wait > end) return false;
      std::this_thread::sleep_for(wait);
      Connect();
    }
    return true;
  }

  // Runs a command given as separate arguments (binary safe). nullptr on a connection error; the
  // connection is then re-established by AwaitConnected (or the next command, without waiting).
  RedisReply Command(const std::vector<std::string>& args) {
    if (!ok() && !Connect()) return nullptr;
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    return RedisReply(static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(args.size()), argv.data(), lengths.data())));
  }

 private:
  bool Connect() {
    if (context_ != nullptr) redisFree(context_);
    const timeval timeout{1, 0};
    context_ = redisConnectWithTimeout(host_.c_str(), port_, timeout);
    if (ok()) {
      failed_attempts_ = 0;
      return true;
    }
    ++failed_attempts_;
    return false;
  }
  // Full jitter: uniform in [0, ceiling], the ceiling doubling from 10 ms up to 1 s.
  std::chrono::milliseconds Backoff() {
    const int64_t ceiling = std::min<int64_t>(1000, int64_t{10} << std::min(failed_attempts_, 7));
    return std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(1, ceiling)(rng_));
  }

  const std::string host_;
  const int port_;
  redisContext* context_ = nullptr;
  int failed_attempts_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

// One stream entry: its ID and field/value pairs.
struct StreamEntry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;
  // A reference into the entry (event views point at it), empty when the field is absent.
  const std::string& Field(const std::string& name) const {
    static const std::string kEmpty;
    for (const auto& [k, v] : fields) {
      if (k == name) return v;
    }
    return kEmpty;
  }
  bool Has(const std::string& name) const {
    for (const auto& kv : fields) {
      if (kv.first == name) return true;
    }
    return false;
  }
};

// Parses an array of [id, [field, value, ...]] entries (XRANGE, XAUTOCLAIM's second element, ...).
inline std::vector<StreamEntry> ParseEntries(const redisReply* array) {
  std::vector<StreamEntry> out;
  if (array == nullptr || array->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i < array->elements; ++i) {
    const redisReply* e = array->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING) continue;
    StreamEntry entry;
    entry.id.assign(e->element[0]->str, e->element[0]->len);
    const redisReply* f = e->element[1];
    if (f->type == REDIS_REPLY_ARRAY) {
      for (size_t k = 0; k + 1 < f->elements; k += 2) {
        entry.fields.emplace_back(std::string(f->element[k]->str, f->element[k]->len),
                                  std::string(f->element[k + 1]->str, f->element[k + 1]->len));
      }
    }
    out.push_back(std::move(entry));
  }
  return out;
}

// XREADGROUP's reply: [[stream, entries]] or nil.
inline std::vector<StreamEntry> ParseReadGroup(const redisReply* reply) {
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) return {};
  const redisReply* stream = reply->element[0];
  if (stream->type != REDIS_REPLY_ARRAY || stream->elements < 2) return {};
  return ParseEntries(stream->element[1]);
}

struct RedisStreamsOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string stream;    // required
  std::string group;     // required; created (MKSTREAM) if missing
  std::string consumer;  // required: this consumer's name in the group, stable across restarts
  size_t batch = 16;     // entries per read, handled with one HandleBatch
  absl::Duration block = absl::Milliseconds(100);  // how long a read of new entries waits
  // Entries of other consumers idle longer than this are claimed. Choose the store's lease: a holder
  // that is alive renews its lease (heartbeat) and its entry is answered "in flight" anyway.
  absl::Duration claim_idle = absl::Seconds(30);
  std::string dead_letters = "dead-letter";  // the stream dead letters are added to
  // Test hooks: called with the entries about to be handled, and after the commit before the acks.
  std::function<void(size_t entries)> before_handle;
  std::function<void(size_t entries)> before_ack;
};

// How an entry becomes an event: nullopt dead-letters it ("invalid: <why>").
using EntryToEvent = std::function<std::optional<Event>(const StreamEntry& entry, std::string* why)>;
// The handler, given the entry the event came from.
using EntryHandler = std::function<absl::StatusOr<std::string>(const StreamEntry& entry, const EventContext& ctx)>;

class RedisStreamsConsumer {
 public:
  struct Counters {
    uint64_t deliveries = 0;    // entries read
    uint64_t acked = 0;         // acknowledged (applied, duplicates, dead letters)
    uint64_t dead_letters = 0;  // sent to the dead-letter stream
    uint64_t reconnects = 0;    // times the connection came back
  };

  // kInvalidArgument when stream, group or consumer is empty. Connects lazily: Redis may be down.
  static absl::StatusOr<std::unique_ptr<RedisStreamsConsumer>> Create(RedisStreamsOptions options,
                                                                      Processor* processor);

  // One poll (see the header comment). Returns how many entries it handled (0: nothing to do);
  // kUnavailable while Redis is unreachable (it waited up to a second for it: calling again in a loop
  // does not spin). While the Processor is paused (store failure), it waits for it instead of reading.
  absl::StatusOr<size_t> Poll(const EntryToEvent& to_event, const EntryHandler& handler);

  // Entries read by the group and not acknowledged, by any consumer (XPENDING); kUnavailable on error.
  absl::StatusOr<uint64_t> Pending();

  const Counters& counters() const { return counters_; }
  RedisConnection& connection() { return redis_; }

 private:
  RedisStreamsConsumer(RedisStreamsOptions options, Processor* processor);
  void EnsureGroup();
  std::vector<StreamEntry> Read(bool* connection_error);
  void DeadLetter(const StreamEntry& entry, const std::string& reason);

  const RedisStreamsOptions options_;
  Processor* const processor_;
  RedisConnection redis_;
  Counters counters_;
  bool own_pending_done_ = false;
  bool group_ready_ = false;
  std::chrono::steady_clock::time_point last_claim_{};
};

}  // namespace idem

#endif  // IDEM_REDIS_STREAMS_H_
