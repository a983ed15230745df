// A minimal RAII wrapper over hiredis for the Redis Streams example: one connection, commands with
// binary-safe arguments, replies freed automatically.
#ifndef IDEM_EXAMPLES_REDIS_STREAMS_REDIS_H_
#define IDEM_EXAMPLES_REDIS_STREAMS_REDIS_H_

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace idem::example {

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// One connection that comes back by itself: a command on a broken connection (redis-server restarted,
// network cut) fails (nullptr), and the next call reconnects, with exponential backoff and full jitter
// between attempts so that a consumer waiting for Redis neither spins nor hammers it.
class Redis {
 public:
  Redis(std::string host, int port) : host_(std::move(host)), port_(port) { Connect(); }
  ~Redis() {
    if (context_ != nullptr) redisFree(context_);
  }
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  bool ok() const { return context_ != nullptr && context_->err == 0; }
  std::string error() const { return context_ == nullptr ? "no connection" : context_->errstr; }
  // Connection attempts that failed since the last success; reconnects that succeeded in all.
  int failed_attempts() const { return failed_attempts_; }
  uint64_t reconnects() const { return reconnects_; }

  // Blocks until connected (true) or `give_up_after` passes (false), waiting between attempts.
  bool AwaitConnected(std::chrono::milliseconds give_up_after = std::chrono::milliseconds(1000)) {
    const auto end = std::chrono::steady_clock::now() + give_up_after;
    while (!ok()) {
      const auto wait = Backoff();
      if (std::chrono::steady_clock::now() + wait > end) return false;
      std::this_thread::sleep_for(wait);
      if (Connect()) ++reconnects_;
    }
    return true;
  }

  // Runs a command given as separate arguments (binary safe). nullptr on a connection error; the
  // connection is then re-established by AwaitConnected (or the next command, without waiting).
  Reply Command(const std::vector<std::string>& args) {
    if (!ok() && (!Connect() || (++reconnects_, false))) return nullptr;
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
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
  uint64_t reconnects_ = 0;
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

// The example's event layout, shared by producer, consumer and verifier.
inline std::string StreamName(int partition) { return "events:" + std::to_string(partition); }
inline constexpr char kGroup[] = "ledger-writers";
inline constexpr char kDeadLetters[] = "events:dead-letter";
inline constexpr char kExpected[] = "events:expected";
inline int PartitionOf(const std::string& event_id, int partitions) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : event_id) h = (h ^ c) * 1099511628211ULL;
  return static_cast<int>(h % static_cast<uint64_t>(partitions));
}
inline uint64_t Fingerprint(const std::string& account, const std::string& amount) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : account + "|" + amount) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace idem::example

#endif  // IDEM_EXAMPLES_REDIS_STREAMS_REDIS_H_
