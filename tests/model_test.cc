// Model-based testing: random operation sequences (reserve, batch, commit, release, extend, clock jumps
// forward and backward, compaction, reopen) run against the store and against a small in-memory
// reference model. Any divergence fails with the seed and the shortest failing prefix of operations.
// IDEM_MODEL_SEEDS / IDEM_MODEL_OPS scale the run (defaults keep ctest short).
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "idem/store.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using ::idem::testing::FakeClock;
using ::idem::testing::ScratchDir;

enum class OpKind { kReserve, kBatch, kCommit, kCommitStale, kRelease, kExtend, kAdvance, kRewind, kCompact, kReopen };

struct Op {
  OpKind kind;
  int id = 0;       // which of the few IDs
  int other = 0;    // second ID for batches
  int64_t seconds = 0;
};

std::string Describe(const Op& op) {
  static const char* names[] = {"reserve", "batch",   "commit", "commit-stale", "release",
                                "extend",  "advance", "rewind", "compact",      "reopen"};
  std::ostringstream out;
  out << names[static_cast<int>(op.kind)] << "(id" << op.id;
  if (op.kind == OpKind::kBatch) out << ",id" << op.other;
  if (op.kind == OpKind::kAdvance || op.kind == OpKind::kRewind) out << "," << op.seconds << "s";
  out << ")";
  return out.str();
}

std::vector<Op> Generate(uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::vector<Op> ops;
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int i = 0; i < n; ++i) {
    const int r = pick(0, 99);
    Op op;
    op.id = pick(0, 5);
    op.other = pick(0, 5);
    if (r < 30) op.kind = OpKind::kReserve;
    else if (r < 38) op.kind = OpKind::kBatch;
    else if (r < 55) op.kind = OpKind::kCommit;
    else if (r < 60) op.kind = OpKind::kCommitStale;
    else if (r < 67) op.kind = OpKind::kRelease;
    else if (r < 73) op.kind = OpKind::kExtend;
    else if (r < 88) { op.kind = OpKind::kAdvance; op.seconds = pick(1, 4) == 1 ? pick(3000, 8000) : pick(1, 40); }
    else if (r < 91) { op.kind = OpKind::kRewind; op.seconds = pick(1, 20); }
    else if (r < 96) op.kind = OpKind::kCompact;
    else op.kind = OpKind::kReopen;
    ops.push_back(op);
  }
  return ops;
}

// The reference: what a correct store answers, from first principles.
struct ModelRecord {
  bool done = false;
  uint64_t token = 0;
  absl::Time deadline;
  std::string result;
};

class Harness {
 public:
  Harness(bool durable, const std::string& path) : path_(path) {
    clock_ = std::make_shared<FakeClock>();
    options_.clock = clock_;
    options_.ttl = absl::Hours(1);
    options_.lease = absl::Seconds(30);
    options_.maintenance_interval = absl::ZeroDuration();
    options_.durable_reservations = durable;
    Open();
  }

  // Empty when store and model agree on `op`; otherwise what differed.
  std::string Apply(const Op& op) {
    const std::string id = "id" + std::to_string(op.id);
    const absl::Time now = clock_->Now();
    switch (op.kind) {
      case OpKind::kReserve:
        return CheckReserve(id, store_->Reserve(id), now);
      case OpKind::kBatch: {
        const std::string other = "id" + std::to_string(op.other);
        std::vector<std::string_view> ids = {id, other};
        auto results = store_->ReserveBatch(ids);
        std::string diff = CheckReserve(id, results[0], now);
        if (!diff.empty()) return diff;
        if (other == id) {  // a repeat in the batch: whatever the first got, the second is not a new reservation
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
        absl::Status s = store_->Commit(id, token, result);
        auto it = model_.find(id);
        // A done record past its retention reads as absent; an expired lease still holds until taken over.
        const bool holds = it != model_.end() && it->second.token == token &&
                           !(it->second.done && it->second.deadline <= now);
        if (holds != s.ok()) return "commit(" + std::to_string(token) + ") gave " + s.ToString();
        if (!holds && s.code() != absl::StatusCode::kAborted) return "commit by a loser: " + s.ToString();
        if (holds && !it->second.done) it->second = {true, token, now + options_.ttl, result};
        return "";
      }
      case OpKind::kRelease:
      case OpKind::kExtend: {
        const uint64_t token = TokenFor(id, false);
        if (token == 0) return "";
        const bool release = op.kind == OpKind::kRelease;
        absl::Status s = release ? store_->Release(id, token) : store_->Extend(id, token);
        auto it = model_.find(id);
        absl::StatusCode want = absl::StatusCode::kAborted;
        if (it != model_.end() && it->second.token == token && !(it->second.done && it->second.deadline <= now)) {
          want = it->second.done ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kOk;
        }
        if (s.code() != want) return std::string(release ? "release" : "extend") + " gave " + s.ToString();
        if (want == absl::StatusCode::kOk) {
          if (release) {
            model_.erase(it);
          } else {
            it->second.deadline = now + options_.lease;
          }
        }
        return "";
      }
      case OpKind::kAdvance:
        clock_->Advance(absl::Seconds(op.seconds));
        return "";
      case OpKind::kRewind:
        clock_->Advance(-absl::Seconds(op.seconds));
        return "";
      case OpKind::kCompact: {
        absl::Status s = store_->CompactExpired();
        if (!s.ok()) return "compact: " + s.ToString();
        // The filter removes expired records from RocksDB; in-memory leases are not in RocksDB.
        DropExpired(now, /*reservations_too=*/options_.durable_reservations);
        return "";
      }
      case OpKind::kReopen:
        store_.reset();
        Open();
        if (!store_) return "reopen failed";
        // Records survive a reopen (recovery does not filter); in-memory leases die with the process.
        if (!options_.durable_reservations) {
          for (auto it = model_.begin(); it != model_.end();) it = it->second.done ? std::next(it) : model_.erase(it);
        }
        return "";
    }
    return "";
  }

 private:
  void Open() {
    absl::StatusOr<std::unique_ptr<Store>> s = Store::Open(options_, path_);
    store_ = s.ok() ? std::move(*s) : nullptr;
  }

  void DropExpired(absl::Time now, bool reservations_too) {
    for (auto it = model_.begin(); it != model_.end();) {
      const bool drop = it->second.deadline <= now && (it->second.done || reservations_too);
      it = drop ? model_.erase(it) : std::next(it);
    }
  }

  uint64_t TokenFor(const std::string& id, bool stale) {
    auto& issued = tokens_[id];
    if (issued.empty()) return 0;
    if (!stale || issued.size() == 1) return issued.back();
    return issued[issued.size() - 2];
  }

  std::string CheckReserve(const std::string& id, const absl::StatusOr<Reservation>& got, absl::Time now) {
    if (!got.ok()) return "reserve " + id + ": " + got.status().ToString();
    auto it = model_.find(id);
    if (it != model_.end() && it->second.deadline > now) {
      const Verdict want = it->second.done ? Verdict::kDuplicate : Verdict::kInFlight;
      if (got->verdict != want) return "reserve " + id + ": verdict " + std::to_string(static_cast<int>(got->verdict));
      if (got->deadline != it->second.deadline) return "reserve " + id + ": deadline differs";
      if (it->second.done && got->result != it->second.result) return "reserve " + id + ": result differs";
      return "";
    }
    if (got->verdict != Verdict::kReserved) {
      return "reserve " + id + ": expected a reservation, got verdict " + std::to_string(static_cast<int>(got->verdict));
    }
    const bool want_takeover = it != model_.end() && !it->second.done;
    if (got->takeover != want_takeover) return "reserve " + id + ": takeover flag differs";
    auto& issued = tokens_[id];
    if (!issued.empty() && got->token <= issued.back()) return "reserve " + id + ": token did not grow";
    issued.push_back(got->token);
    model_[id] = {false, got->token, now + options_.lease, ""};
    return "";
  }

  std::string path_;
  std::shared_ptr<FakeClock> clock_;
  Options options_;
  std::unique_ptr<Store> store_;
  std::map<std::string, ModelRecord> model_;
  std::map<std::string, std::vector<uint64_t>> tokens_;
};

// Index of the first diverging op, or -1.
int RunSequence(bool durable, const std::vector<Op>& ops, std::string* diff) {
  ScratchDir dir;
  Harness harness(durable, dir.Sub("db"));
  for (size_t i = 0; i < ops.size(); ++i) {
    *diff = harness.Apply(ops[i]);
    if (!diff->empty()) return static_cast<int>(i);
  }
  return -1;
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

class ModelTest : public ::testing::TestWithParam<bool> {};

TEST_P(ModelTest, StoreAgreesWithReferenceModel) {
  const int seeds = EnvInt("IDEM_MODEL_SEEDS", 40);
  const int length = EnvInt("IDEM_MODEL_OPS", 150);
  uint64_t operations = 0;
  for (int seed = 1; seed <= seeds; ++seed) {
    const std::vector<Op> ops = Generate(static_cast<uint64_t>(seed) * 7919 + (GetParam() ? 1 : 0), length);
    std::string diff;
    const int at = RunSequence(GetParam(), ops, &diff);
    operations += ops.size();
    if (at < 0) continue;
    // Shrink: drop operations one by one while the divergence persists.
    std::vector<Op> shrunk(ops.begin(), ops.begin() + at + 1);
    for (size_t i = 0; i + 1 < shrunk.size();) {
      std::vector<Op> candidate = shrunk;
      candidate.erase(candidate.begin() + static_cast<long>(i));
      std::string d;
      if (RunSequence(GetParam(), candidate, &d) >= 0) {
        shrunk = candidate;
      } else {
        ++i;
      }
    }
    std::string trace;
    for (const Op& op : shrunk) trace += "  " + Describe(op) + "\n";
    FAIL() << "seed " << seed << " diverged at op " << at << ": " << diff << "\nshortest reproduction (" << shrunk.size()
           << " ops):\n"
           << trace;
  }
  RecordProperty("operations", static_cast<int>(operations));
  std::printf("model test: %llu operations, %d seeds, no divergence\n", static_cast<unsigned long long>(operations),
              seeds);
}

INSTANTIATE_TEST_SUITE_P(Modes, ModelTest, ::testing::Bool(), [](const auto& info) {
  return info.param ? std::string("DurableReservations") : std::string("InMemoryLeases");
});

}  // namespace
}  // namespace idem
