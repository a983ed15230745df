// The reference model of the store, shared by the model-based test and the operation-sequence fuzzer:
// operations (reserve, batch, commit, release, extend, clock jumps forward and backward, compaction,
// reopen) and a Harness that applies each one to a real Store and to the model and says where they differ.
#ifndef IDEM_TESTS_SUPPORT_MODEL_H_
#define IDEM_TESTS_SUPPORT_MODEL_H_

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "idem/store.h"
#include "rocksdb/env.h"
#include "tests/support/fake_clock.h"

namespace idem::testing {

// kReserveRaw reserves an ID outside the model's set (binary, empty, around the size limit); only the
// fuzzer makes those.
enum class OpKind {
  kReserve,
  kBatch,
  kCommit,
  kCommitStale,
  kRelease,
  kExtend,
  kAdvance,
  kRewind,
  kCompact,
  kReopen,
  kReserveRaw
};
inline constexpr const char* kOpNames[] = {"reserve", "batch",  "commit",  "commit-stale", "release",    "extend",
                                           "advance", "rewind", "compact", "reopen",       "reserve-raw"};

struct Op {
  OpKind kind;
  int id = 0;           // which of the few IDs
  int other = 0;        // second ID for batches
  int64_t seconds = 0;  // clock steps; for kReserveRaw, the raw ID's length
  std::string raw;      // kReserveRaw: the ID; when empty, one of `seconds` bytes is made up
};

inline std::string Describe(const Op& op) {
  std::ostringstream out;
  out << kOpNames[static_cast<int>(op.kind)] << "(id" << op.id;
  if (op.kind == OpKind::kBatch) out << ",id" << op.other;
  if (op.kind == OpKind::kAdvance || op.kind == OpKind::kRewind) out << "," << op.seconds << "s";
  if (op.kind == OpKind::kReserveRaw) out << "," << op.seconds << "B";
  out << ")";
  return out.str();
}

// The ID a kReserveRaw stands for: its own bytes, or (parsed from a printed sequence, which gives only
// the length) `seconds` bytes that no idN equals. What matters to the model is the length: whether the
// store accepts the ID, and so reads its clock.
inline std::string RawIdOf(const Op& op) {
  if (!op.raw.empty() || op.seconds == 0) return op.raw;
  std::string id(static_cast<size_t>(op.seconds), static_cast<char>('a' + op.id));
  id[0] = '\xfe';
  return id;
}

// The inverse of Describe: operations separated by white space ("reserve(id1)", "batch(id2,id4)",
// "advance(id0,37s)"), so that a sequence a failure printed can be pasted into a regression test as it
// is. Words that are not operations are skipped.
inline std::vector<Op> ParseOps(const std::string& text) {
  std::vector<Op> ops;
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    const size_t paren = word.find("(id");
    if (paren == std::string::npos) continue;
    const std::string name = word.substr(0, paren);
    Op op;
    bool known = false;
    for (int k = 0; k < static_cast<int>(std::size(kOpNames)); ++k) {
      if (name == kOpNames[k]) {
        op.kind = static_cast<OpKind>(k);
        known = true;
      }
    }
    if (!known) continue;
    op.id = std::atoi(word.c_str() + paren + 3);
    const size_t comma = word.find(',', paren);
    if (comma != std::string::npos) {
      if (op.kind == OpKind::kBatch)
        op.other = std::atoi(word.c_str() + comma + 3);
      else
        op.seconds = std::atoll(word.c_str() + comma + 1);
    }
    ops.push_back(op);
  }
  return ops;
}

// The operation mix: a percentile in [0, 100) to an operation kind. Shared by Generate and the fuzzer's
// decoder so that both explore the same mix.
inline OpKind KindOf(int percentile) {
  if (percentile < 30) return OpKind::kReserve;
  if (percentile < 38) return OpKind::kBatch;
  if (percentile < 55) return OpKind::kCommit;
  if (percentile < 60) return OpKind::kCommitStale;
  if (percentile < 67) return OpKind::kRelease;
  if (percentile < 73) return OpKind::kExtend;
  if (percentile < 88) return OpKind::kAdvance;
  if (percentile < 91) return OpKind::kRewind;
  if (percentile < 96) return OpKind::kCompact;
  return OpKind::kReopen;
}

inline std::vector<Op> Generate(uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::vector<Op> ops;
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int i = 0; i < n; ++i) {
    Op op;
    op.kind = KindOf(pick(0, 99));
    op.id = pick(0, 5);
    op.other = pick(0, 5);
    if (op.kind == OpKind::kAdvance) op.seconds = pick(1, 4) == 1 ? pick(3000, 8000) : pick(1, 40);
    if (op.kind == OpKind::kRewind) op.seconds = pick(1, 20);
    // One operation in 40 is a reservation of an ID outside the set, valid or not (empty, at and over
    // the 512-byte limit): it writes a record but must not count as a call that read the clock when
    // refused. Drawn apart from KindOf, so that the fuzzer's decoding of the corpus stays as it was.
    if (pick(0, 39) == 0) {
      static constexpr int kRawLengths[] = {0, 1, 64, 511, 512, 513};
      op.kind = OpKind::kReserveRaw;
      op.seconds = kRawLengths[pick(0, 5)];
    }
    ops.push_back(op);
  }
  return ops;
}

// The reference: what a correct store answers, from first principles. Two layers, as in the store:
// `disk_` holds what is in RocksDB (every record with durable reservations; only done records with
// in-memory leases), `leases_` this process's reservations (kept in memory in both modes; a durable
// reservation of an earlier process is only on disk, and its holder is gone). One thing the model cannot know is
// whether a background compaction already removed an expired record: then only the takeover flag of the next
// reservation, and the fate of an owner acting on an expired lease, may go either way, and the model
// follows the store there.
struct ModelRecord {
  bool done = false;
  uint64_t token = 0;
  absl::Time deadline;
  std::string result;
  int incarnation = 0;  // of the store that wrote it: a reservation of an earlier one has no holder
};

class Harness {
 public:
  // `env`: null for real files; fuzzing passes an in-memory Env.
  Harness(bool durable, const std::string& path, rocksdb::Env* env = nullptr) : path_(path) {
    clock_ = std::make_shared<FakeClock>();
    options_.env = env;
    options_.clock = clock_;
    options_.ttl = absl::Hours(1);
    options_.lease = absl::Seconds(30);
    options_.maintenance_interval = absl::ZeroDuration();
    options_.durable_reservations = durable;
    // Small buffers: cheap to open (the fuzzer opens a store per input) and more flushes per sequence.
    options_.write_buffer_size = 256 << 10;
    options_.block_cache_bytes = 1 << 20;
    options_.recent_commits_cache_entries = 1024;
    Open();
  }

  // Empty when store and model agree on `op`; otherwise what differed.
  std::string Apply(const Op& op) {
    const std::string id = "id" + std::to_string(op.id);
    // The store's time never goes back within a process: a rewound clock stands still until it catches
    // up. The store reads the clock only when called, so the model does too (Observe).
    const absl::Time now = std::max(horizon_, clock_->Now());
    switch (op.kind) {
      case OpKind::kReserve: Observe(); return CheckReserve(id, store_->Reserve(id), now);
      case OpKind::kBatch: {
        const std::string other = "id" + std::to_string(op.other);
        std::vector<std::string_view> ids = {id, other};
        Observe();
        auto results = store_->ReserveBatch(ids);
        std::string diff = CheckReserve(id, results[0], now);
        if (!diff.empty()) return diff;
        if (other == id) {  // a repeat in the batch: never a second reservation
          if (!results[1].ok()) return "batch repeat failed: " + results[1].status().ToString();
          return results[1]->verdict == Verdict::kReserved ? "batch repeat reserved twice" : "";
        }
        return CheckReserve(other, results[1], now);
      }
      case OpKind::kCommit:
      case OpKind::kCommitStale: {
        const uint64_t token = TokenFor(id, op.kind == OpKind::kCommitStale);
        if (token == 0) return "";
        const std::string result = "r" + std::to_string(token);
        Observe();
        absl::Status s = store_->Commit(id, token, result);
        const Hold hold = HoldOf(id, token, now);
        if (hold == Hold::kMaybeDone) {  // done, or compacted away earlier: OK (no-op) or kAborted
          if (!s.ok()) Forget(id);
          return s.ok() || s.code() == absl::StatusCode::kAborted ? "" : "commit: " + s.ToString();
        }
        if (hold == Hold::kMaybe) {
          if (s.ok()) Commit(id, token, now, result);
          if (!s.ok()) Forget(id);
          return s.ok() || s.code() == absl::StatusCode::kAborted ? "" : "commit: " + s.ToString();
        }
        const bool holds = hold != Hold::kNo;
        if (holds != s.ok()) return "commit(" + std::to_string(token) + ") gave " + s.ToString();
        if (!holds && s.code() != absl::StatusCode::kAborted) return "commit by a loser: " + s.ToString();
        if (hold == Hold::kReserved) Commit(id, token, now, result);
        return "";
      }
      case OpKind::kRelease:
      case OpKind::kExtend: {
        const uint64_t token = TokenFor(id, false);
        if (token == 0) return "";
        const bool release = op.kind == OpKind::kRelease;
        Observe();
        absl::Status s = release ? store_->Release(id, token) : store_->Extend(id, token);
        const Hold hold = HoldOf(id, token, now);
        absl::StatusCode want = absl::StatusCode::kAborted;
        if (hold == Hold::kReserved || hold == Hold::kMaybe) want = absl::StatusCode::kOk;
        if (hold == Hold::kDone) want = absl::StatusCode::kFailedPrecondition;
        if ((hold == Hold::kMaybe || hold == Hold::kMaybeDone) && s.code() == absl::StatusCode::kAborted) {
          Forget(id);
          return "";
        }
        if (hold == Hold::kMaybeDone) want = absl::StatusCode::kFailedPrecondition;
        if (s.code() != want) return std::string(release ? "release" : "extend") + " gave " + s.ToString();
        if (want == absl::StatusCode::kOk) {
          if (release) {
            Forget(id);
          } else {
            hold_record_->deadline = now + options_.lease;
            // A durable reservation of this process is rewritten with its new deadline.
            if (durable() && leases_.count(id) > 0) disk_[id] = leases_[id];
          }
        }
        return "";
      }
      case OpKind::kAdvance: clock_->Advance(absl::Seconds(op.seconds)); return "";
      case OpKind::kRewind: clock_->Advance(-absl::Seconds(op.seconds)); return "";
      case OpKind::kCompact: {
        Observe();
        absl::Status s = store_->CompactExpired();
        if (!s.ok()) return "compact: " + s.ToString();
        for (auto it = disk_.begin(); it != disk_.end();)
          it = it->second.deadline <= now ? disk_.erase(it) : std::next(it);
        return "";
      }
      case OpKind::kReserveRaw: return ReserveRaw(RawIdOf(op));
      case OpKind::kReopen:
        store_.reset();
        Open();
        if (!store_) return "reopen failed";
        leases_.clear();  // in-memory leases die with the process; RocksDB records survive
        ++incarnation_;   // ... and are taken over at once: their holders died with it
        // Every token issued so far is below the new store's floor: Commit, Release and Extend with one
        // are refused whatever the store holds (their holders are gone).
        for (const auto& [id, issued] : tokens_) {
          for (uint64_t t : issued) fence_below_ = std::max(fence_below_, t + 1);
        }
        return "";
    }
    return "";
  }

 private:
  enum class Hold { kNo, kReserved, kDone, kMaybe, kMaybeDone };

  // Reserve of an ID outside the model's set (binary, empty, around the size limit): a verdict for a
  // valid ID, InvalidArgument for an invalid one, nothing else. Empty when that holds.
  std::string ReserveRaw(const std::string& id) {
    const std::string where = "reserve-raw of " + std::to_string(id.size()) + " bytes: ";
    if (!store_) return "no store";
    const bool valid = !id.empty() && id.size() <= options_.max_id_bytes;
    if (valid) Observe();  // the store reads its clock only for an ID it accepts
    const absl::StatusOr<Reservation> r = store_->Reserve(id);
    if (valid) return r.ok() ? "" : where + "valid ID refused: " + r.status().ToString();
    return r.status().code() == absl::StatusCode::kInvalidArgument
               ? ""
               : where + "invalid ID answered " + r.status().ToString();
  }

  void Observe() {
    horizon_ = std::max(horizon_, clock_->Now());
    ever_ = std::max(ever_, horizon_);
  }

  void Open() {
    horizon_ = clock_->Now();  // a new process starts from its clock (the store reads it at Open)
    ever_ = std::max(ever_, horizon_);
    absl::StatusOr<std::unique_ptr<Store>> s = Store::Open(options_, path_);
    store_ = s.ok() ? std::move(*s) : nullptr;
  }

  bool durable() const { return options_.durable_reservations; }

  // Does `token` hold `id`? Sets hold_record_ to the record it holds.
  Hold HoldOf(const std::string& id, uint64_t token, absl::Time now) {
    hold_record_ = nullptr;
    if (token < fence_below_) return Hold::kNo;  // an earlier incarnation's token
    auto lease = leases_.find(id);               // this process's reservations, in memory in both modes
    if (lease != leases_.end()) {
      if (lease->second.token != token) return Hold::kNo;
      hold_record_ = &lease->second;
      return Hold::kReserved;
    }
    auto it = disk_.find(id);
    if (it == disk_.end() || it->second.token != token) return Hold::kNo;
    hold_record_ = &it->second;
    if (it->second.done) {
      if (it->second.deadline <= now) return Hold::kNo;
      return it->second.deadline <= ever_ ? Hold::kMaybeDone : Hold::kDone;
    }
    // An expired reservation on disk still holds, unless a background compaction removed it.
    return it->second.deadline > now && it->second.deadline > ever_ ? Hold::kReserved : Hold::kMaybe;
  }

  void Commit(const std::string& id, uint64_t token, absl::Time now, const std::string& result) {
    leases_.erase(id);
    disk_[id] = {true, token, now + options_.ttl, result, incarnation_};
  }

  void Forget(const std::string& id) {
    if (leases_.erase(id) > 0 && !durable()) return;
    disk_.erase(id);
  }

  uint64_t TokenFor(const std::string& id, bool stale) {
    auto& issued = tokens_[id];
    if (issued.empty()) return 0;
    if (!stale || issued.size() == 1) return issued.back();
    return issued[issued.size() - 2];
  }

  std::string CheckReserve(const std::string& id, const absl::StatusOr<Reservation>& got, absl::Time now) {
    if (!got.ok()) return "reserve " + id + ": " + got.status().ToString();
    const ModelRecord* live = nullptr;
    bool takeover = false, maybe_takeover = false, holder_gone = false;
    auto lease = leases_.find(id);
    if (lease != leases_.end()) {
      if (lease->second.deadline > now)
        live = &lease->second;
      else
        takeover = true;
    }
    if (live == nullptr && !takeover) {
      auto it = disk_.find(id);
      if (it != disk_.end()) {
        const bool gone = !it->second.done && it->second.incarnation < incarnation_;
        if (it->second.deadline > now && !gone) {
          live = &it->second;
        } else if (gone && it->second.deadline > now && it->second.deadline > ever_) {
          takeover = holder_gone = true;  // certainly still there, and its holder died with its process
        } else {
          maybe_takeover = !it->second.done;
        }
      }
    }
    const bool live_on_disk = live != nullptr && (lease == leases_.end() || live != &lease->second);
    if (live_on_disk && live->deadline <= ever_ && got->verdict == Verdict::kReserved) {
      // The record may have been compacted away before the clock went back; the store says it was.
      live = nullptr;
      maybe_takeover = true;
    }
    if (live != nullptr) {
      const Verdict want = live->done ? Verdict::kDuplicate : Verdict::kInFlight;
      if (got->verdict != want) return "reserve " + id + ": verdict " + std::to_string(static_cast<int>(got->verdict));
      if (got->deadline != live->deadline) return "reserve " + id + ": deadline differs";
      if (live->done && got->result != live->result) return "reserve " + id + ": result differs";
      return "";
    }
    if (got->verdict != Verdict::kReserved) {
      return "reserve " + id + ": expected a reservation, got verdict " +
             std::to_string(static_cast<int>(got->verdict));
    }
    if (!maybe_takeover && got->takeover != takeover) return "reserve " + id + ": takeover flag differs";
    if (!maybe_takeover && got->holder_gone != holder_gone) return "reserve " + id + ": holder_gone differs";
    auto& issued = tokens_[id];
    if (!issued.empty() && got->token <= issued.back()) return "reserve " + id + ": token did not grow";
    issued.push_back(got->token);
    const ModelRecord reservation{false, got->token, now + options_.lease, "", incarnation_};
    leases_[id] = reservation;
    if (durable()) disk_[id] = reservation;
    return "";
  }

  std::string path_;
  std::shared_ptr<FakeClock> clock_;
  Options options_;
  std::unique_ptr<Store> store_;
  std::map<std::string, ModelRecord> disk_, leases_;
  ModelRecord* hold_record_ = nullptr;
  absl::Time horizon_ = absl::InfinitePast();
  // The latest time any incarnation of the store has seen. A record whose deadline is before it may
  // have been removed by a background compaction (after a reopen the clock may be behind it), so the
  // model cannot say whether it still exists.
  absl::Time ever_ = absl::InfinitePast();
  std::map<std::string, std::vector<uint64_t>> tokens_;
  int incarnation_ = 0;
  uint64_t fence_below_ = 0;  // tokens below it were issued by an earlier incarnation
};

}  // namespace idem::testing

#endif  // IDEM_TESTS_SUPPORT_MODEL_H_
