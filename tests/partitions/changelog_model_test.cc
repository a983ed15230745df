// A randomized model check of the changelog protocol (idem/changelog.h) before any queue is involved.
//
// Owners of one partition come and go: each new owner restores from the last snapshot pointer (or the
// log's start), claims the next ordinal through the log, reads up to its claim, then commits. Older
// owners keep running as zombies: they commit, write batches late, snapshot, die with records unsent.
// Producers interleave their records in the log in any order that keeps each producer's own order (as
// Kafka does), and retention cuts the log's start. The log also loses: a record of an owner can fail
// to be produced while the ones it sent after it land (a gap inside one claim: that owner stops and
// the partition is claimed again), and the log can come back recreated empty or cut below its end.
// Checked against a reference model of "exactly the accepted commits, once", computed by its own few
// lines from the full log:
//   * every restore (from the pointer, and from offset 0 while the log is whole) gives the reference
//     state of the log it read;
//   * the current owner, once all it sent is in the log, holds exactly the reference state;
//   * a restore whose start retention removed, or whose log ends below the end an owner recorded with
//     its committed offsets, is kDataLoss, never a silent partial state.
// IDEM_CHANGELOG_MODEL_OPS and IDEM_CHANGELOG_MODEL_SEEDS scale the run (the default: 10^5 operations).
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "idem/changelog.h"
#include "tests/support/changelog_util.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Rec;

using State = std::map<std::pair<uint32_t, std::string>, std::string>;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

void ApplyOps(const std::vector<ChangelogOp>& ops, State* state) {
  for (const ChangelogOp& op : ops) {
    if (op.kind == ChangelogOp::Kind::kPut) {
      (*state)[{op.family, op.key}] = op.value;
    } else {
      state->erase({op.family, op.key});
    }
  }
}

class StateSink : public ChangelogReplayer::Sink {
 public:
  explicit StateSink(State* state) : state_(state) {}
  absl::Status SnapshotEntry(const ChangelogOp& entry) override {
    if (done_) return absl::InternalError("entry after SnapshotDone");
    (*state_)[{entry.family, entry.key}] = entry.value;
    return absl::OkStatus();
  }
  absl::Status SnapshotDone() override {
    done_ = true;
    return absl::OkStatus();
  }
  absl::Status Apply(const ChangelogRecord& batch) override {
    ApplyOps(batch.ops, state_);
    return absl::OkStatus();
  }

 private:
  State* state_;
  bool done_ = false;
};

// The reference: the state of applying, once, every batch whose claim is the last claim that counted
// before it and none of whose claim's earlier batches was lost, where a claim counts when its ordinal is
// one more than the last that counted.
class Reference {
 public:
  void Append(const ChangelogRecord& r) {
    if (r.type == ChangelogRecord::Type::kClaim && r.claim.ordinal == current_.ordinal + 1) current_ = r.claim;
    if (r.type == ChangelogRecord::Type::kBatch && current_.ordinal > 0 && r.claim == current_ && !Broken(r.claim)) {
      ApplyOps(r.ops, &state_);
      ++accepted_;
    }
  }
  // A batch of `claim` never reached the log: what its writer sent after it was computed on it.
  void Lost(const ChangelogRecord& r) {
    if (r.type == ChangelogRecord::Type::kBatch) broken_.push_back(r.claim);
  }
  const State& state() const { return state_; }
  uint64_t accepted() const { return accepted_; }

 private:
  bool Broken(const ClaimId& claim) const {
    for (const ClaimId& b : broken_) {
      if (b == claim) return true;
    }
    return false;
  }
  ClaimId current_;
  std::vector<ClaimId> broken_;
  State state_;
  uint64_t accepted_ = 0;
};

struct Owner {
  ClaimId claim;
  bool assigned_latest = false;  // the group's current assignee (only it can save a pointer)
  bool alive = true;
  bool caught_up = false;  // has read its own claim back, and won it
  bool failed = false;     // a record of its own was lost: it produces nothing new (the member restarts)
  State local;
  std::unique_ptr<StateSink> sink;
  std::unique_ptr<ChangelogReplayer> replayer;  // reading toward its own claim
  std::deque<ChangelogRecord> outbox;           // sent, not yet in the log
  uint64_t sequence = 0;
  uint64_t last_batch = 0;              // the sequence of its last batch (the next one's previous_sequence)
  int64_t pending_snapshot_begin = -1;  // log offset of its snapshot's Begin, once there
  // A snapshot being sent: the state it copies, and how far it got.
  std::unique_ptr<State> snapshot;
  State::const_iterator snapshot_next;
  uint64_t snapshot_id = 0, snapshot_count = 0, snapshot_checksum = 0;
};

class Model {
 public:
  explicit Model(uint32_t seed) : rng_(seed) {}

  void Run(int ops) {
    NewOwner();
    for (int i = 0; i < ops && !::testing::Test::HasFatalFailure(); ++i) {
      const int dice = Uniform(0, 99);
      if (dice < 3) {
        NewOwner();
      } else if (dice < 48) {
        Commit();
      } else if (dice < 88) {
        Flush();
      } else if (dice < 89) {
        Snapshot();
      } else if (dice < 92) {
        SnapshotProgress();
      } else if (dice < 93) {
        KillSomeZombie();
      } else if (dice < 95) {
        Truncate();
      } else if (dice < 96) {
        LoseRecord();
      } else if (dice < 97) {
        LogComesBackShort();
      } else {
        CheckCurrentOwner();
      }
    }
    // Drain: every record reaches the log, and the current owner agrees with the reference.
    for (Owner& o : owners_) {
      while (o.alive && o.snapshot) SnapshotProgressOf(&o);
      while (!o.outbox.empty()) Append(&o);
    }
    CheckCurrentOwner();
    RestoreAndCheck();
  }

  uint64_t accepted() const { return reference_.accepted(); }
  size_t log_size() const { return log_.size(); }
  int restores() const { return restores_; }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  // Restores the partition as a new owner would, checks it against the reference, and returns the
  // replayer positioned at the log's end.
  std::unique_ptr<ChangelogReplayer> RestoreAndCheck(State* state = nullptr,
                                                     std::unique_ptr<StateSink>* sink = nullptr) {
    State scratch;
    std::unique_ptr<StateSink> scratch_sink;
    if (state == nullptr) state = &scratch;
    if (sink == nullptr) sink = &scratch_sink;
    *sink = std::make_unique<StateSink>(state);
    EXPECT_TRUE(CheckRestorable(pointer_, recorded_end_, log_start_, static_cast<int64_t>(log_.size())).ok());
    auto replayer = std::make_unique<ChangelogReplayer>(
        pointer_ ? ChangelogReplayer::Start::kSnapshot : ChangelogReplayer::Start::kLogStart, sink->get());
    for (int64_t offset = pointer_.value_or(0); offset < static_cast<int64_t>(log_.size()); ++offset) {
      absl::Status s = replayer->Feed(offset, log_[offset]);
      EXPECT_TRUE(s.ok()) << s;
    }
    EXPECT_TRUE(replayer->Finish().ok());
    EXPECT_EQ(*state, reference_.state()) << "restore from " << (pointer_ ? "the snapshot at " : "offset ")
                                          << pointer_.value_or(0) << " of a log of " << log_.size();
    ++restores_;
    if (log_start_ == 0 && pointer_ && Uniform(0, 3) == 0) {  // the whole log gives the same state
      State full;
      StateSink full_sink(&full);
      ChangelogReplayer from_start(ChangelogReplayer::Start::kLogStart, &full_sink);
      for (int64_t offset = 0; offset < static_cast<int64_t>(log_.size()); ++offset) {
        EXPECT_TRUE(from_start.Feed(offset, log_[offset]).ok());
      }
      EXPECT_EQ(full, reference_.state()) << "restore from offset 0";
    }
    return replayer;
  }

  // The group assigns the partition to a new owner. Sometimes a second process (a zombie that missed
  // its revocation and believes it is new again) restores at the same time and races for the same
  // ordinal: the first claim in the log wins, the other must stop.
  void NewOwner() {
    for (Owner& o : owners_) o.assigned_latest = false;
    const bool race = !owners_.empty() && Uniform(0, 9) == 0;
    for (int k = 0; k < (race ? 2 : 1); ++k) {
      owners_.emplace_back();  // a deque: references to the others stay valid
      Owner& o = owners_.back();
      o.assigned_latest = k == 0;
      o.replayer = RestoreAndCheck(&o.local, &o.sink);
      o.claim = ClaimId{o.replayer->current_claim().ordinal + 1, static_cast<uint64_t>(rng_())};
      o.outbox.push_back(Rec(ChangelogRecord::Type::kClaim, o.claim));
    }
  }

  Owner* RandomOwner(bool needs_outbox) {
    std::vector<Owner*> candidates;
    for (Owner& o : owners_) {
      if (o.alive && (!needs_outbox || !o.outbox.empty())) candidates.push_back(&o);
    }
    if (candidates.empty()) return nullptr;
    // The current owner does most of the work.
    if (!needs_outbox && Uniform(0, 2) > 0) {
      for (Owner* o : candidates) {
        if (o->assigned_latest) return o;
      }
    }
    return candidates[Uniform(0, static_cast<int>(candidates.size()) - 1)];
  }

  void Commit() {
    Owner* o = RandomOwner(false);
    if (o == nullptr || !o->caught_up || o->failed) return;  // an owner processes only once it read its claim
    ChangelogRecord batch;
    batch.type = ChangelogRecord::Type::kBatch;
    batch.claim = o->claim;
    batch.sequence = ++o->sequence;
    batch.previous_sequence = o->last_batch;
    o->last_batch = batch.sequence;
    const int event = next_event_++;
    // The marker (family 0) and effects that depend on the local state (family 1): a batch applied
    // twice, or one applied that should not have been, shows in the state.
    batch.ops.push_back(
        ChangelogOp{ChangelogOp::Kind::kPut, 0, "evt-" + std::to_string(event % 3000), std::to_string(event)});
    const std::string account = "acct-" + std::to_string(Uniform(0, 15));
    auto it = o->local.find({1, account});
    const int balance = it == o->local.end() ? 0 : std::stoi(it->second);
    batch.ops.push_back(ChangelogOp{ChangelogOp::Kind::kPut, 1, account, std::to_string(balance + 1)});
    if (Uniform(0, 9) == 0) {
      batch.ops.push_back(ChangelogOp{ChangelogOp::Kind::kDelete, 1, "acct-" + std::to_string(Uniform(0, 15)), ""});
    }
    batch.input_offset = event;
    ApplyOps(batch.ops, &o->local);
    o->outbox.push_back(std::move(batch));
  }

  // The owner begins a snapshot: a copy of its state now (a RocksDB snapshot), sent in chunks over
  // the following steps while it goes on committing, so its later batches and other owners' records
  // interleave with the chunks in the log.
  void Snapshot() {
    Owner* o = RandomOwner(false);
    if (o == nullptr || !o->caught_up || o->snapshot || o->failed) return;
    o->snapshot_id = o->sequence;
    o->outbox.push_back(Rec(ChangelogRecord::Type::kSnapshotBegin, o->claim, o->snapshot_id, next_event_));
    o->snapshot = std::make_unique<State>(o->local);
    o->snapshot_next = o->snapshot->begin();
    o->snapshot_count = o->snapshot_checksum = 0;
  }

  // The next chunk of a snapshot being sent, or its end.
  void SnapshotProgress() {
    Owner* o = RandomOwner(false);
    if (o != nullptr && o->snapshot && !o->failed) SnapshotProgressOf(o);
  }

  void SnapshotProgressOf(Owner* o) {
    if (o->snapshot_next == o->snapshot->end()) {
      ChangelogRecord end = Rec(ChangelogRecord::Type::kSnapshotEnd, o->claim, o->snapshot_id);
      end.entry_count = o->snapshot_count;
      end.checksum = o->snapshot_checksum;
      o->outbox.push_back(end);
      o->snapshot.reset();
      return;
    }
    ChangelogRecord chunk = Rec(ChangelogRecord::Type::kSnapshotChunk, o->claim, o->snapshot_id);
    for (int n = Uniform(1, 256); n > 0 && o->snapshot_next != o->snapshot->end(); --n, ++o->snapshot_next) {
      ChangelogOp entry{ChangelogOp::Kind::kPut, o->snapshot_next->first.first, o->snapshot_next->first.second,
                        o->snapshot_next->second};
      o->snapshot_checksum = SnapshotChecksum(o->snapshot_checksum, entry);
      ++o->snapshot_count;
      chunk.ops.push_back(std::move(entry));
    }
    o->outbox.push_back(std::move(chunk));
  }

  void Flush() {
    Owner* o = RandomOwner(true);
    if (o == nullptr) return;
    for (int n = Uniform(1, 8); n > 0 && !o->outbox.empty(); --n) Append(o);
  }

  // The record at the head of o's outbox reaches the log, through the byte format.
  void Append(Owner* o) {
    ChangelogRecord record = std::move(o->outbox.front());
    o->outbox.pop_front();
    const int64_t offset = static_cast<int64_t>(log_.size());
    const std::string bytes = EncodeChangelogRecord(record);
    absl::StatusOr<ChangelogRecord> decoded = DecodeChangelogRecord(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    log_.push_back(bytes);
    reference_.Append(*decoded);
    if (record.type == ChangelogRecord::Type::kSnapshotBegin) o->pending_snapshot_begin = offset;
    // The snapshot is whole in the log: its owner saves the pointer, which only the group's current
    // assignee can (a zombie's offset commit is fenced by the group's generation).
    // A failed owner saves no pointer (its record track failed before the End was acknowledged).
    if (record.type == ChangelogRecord::Type::kSnapshotEnd && o->assigned_latest && !o->failed &&
        o->pending_snapshot_begin >= 0) {
      pointer_ = o->pending_snapshot_begin;
    }
    // The assignee's offset commits record the log's end it has seen acknowledged.
    if (o->assigned_latest && !o->failed && o->caught_up) recorded_end_ = offset + 1;
    // Owners still reading toward their claim read the new record.
    for (Owner& reader : owners_) {
      if (!reader.alive || reader.caught_up || reader.replayer == nullptr) continue;
      absl::Status s = reader.replayer->Feed(offset, bytes);
      ASSERT_TRUE(s.ok()) << s;
      if (decoded->type == ChangelogRecord::Type::kClaim && decoded->claim == reader.claim) {
        if (reader.replayer->current_claim() == reader.claim) {
          reader.caught_up = true;
          reader.replayer.reset();
          reader.sink.reset();
          EXPECT_EQ(reader.local, reference_.state()) << "an owner's state when it reads its own claim";
        } else {
          reader.alive = false;  // it lost the race for its ordinal: it stops, processing nothing
          ++claims_lost_;
        }
      }
    }
  }

  // The record at the head of an owner's outbox is never produced (too large, refused by the broker),
  // while those behind it are already on their way. The owner stops producing new records and, when it
  // is the assignee, the partition is restored and claimed again (by the same member, or another).
  void LoseRecord() {
    Owner* o = RandomOwner(true);
    if (o == nullptr || !o->caught_up || o->outbox.front().type != ChangelogRecord::Type::kBatch) return;
    reference_.Lost(o->outbox.front());
    losses_.emplace_back(static_cast<int64_t>(log_.size()), o->outbox.front());
    o->outbox.pop_front();
    o->failed = true;
    o->snapshot.reset();  // chunks not yet sent are never sent; the pointer is never saved
    if (o->assigned_latest && Uniform(0, 1) == 0) NewOwner();
  }

  // The log comes back without what was recorded: recreated empty (a topic deleted and made again),
  // or cut below the end the assignee recorded. A restore from it must refuse, or (when nothing was
  // committed yet) give the reference state.
  void LogComesBackShort() {
    const int64_t end = Uniform(0, 1) == 0 ? 0 : Uniform(0, static_cast<int>(log_.size()));
    const std::vector<std::string> shortened(log_.begin(), log_.begin() + end);
    const int64_t start = std::min<int64_t>(log_start_, end);
    State state;
    StateSink sink(&state);
    absl::Status s = CheckRestorable(pointer_, recorded_end_, start, end);
    if (s.ok()) {
      ChangelogReplayer replayer(pointer_ ? ChangelogReplayer::Start::kSnapshot : ChangelogReplayer::Start::kLogStart,
                                 &sink);
      for (int64_t offset = pointer_.value_or(0); offset < end && s.ok(); ++offset) {
        s = replayer.Feed(offset, shortened[offset]);
      }
      if (s.ok()) s = replayer.Finish();
    }
    if (s.ok()) {
      // Accepted: it gives the reference state of what it read, and that holds every batch the group
      // recorded as committed (whose input offsets will not come again).
      Reference read, recorded;
      size_t loss = 0;
      for (int64_t offset = 0; offset < static_cast<int64_t>(log_.size()); ++offset) {
        for (; loss < losses_.size() && losses_[loss].first <= offset; ++loss) {
          read.Lost(losses_[loss].second);
          recorded.Lost(losses_[loss].second);
        }
        const ChangelogRecord r = *DecodeChangelogRecord(log_[offset]);
        if (offset < end) read.Append(r);
        if (offset < recorded_end_) recorded.Append(r);
      }
      EXPECT_EQ(state, read.state()) << "a restore of a log cut at " << end;
      EXPECT_GE(read.accepted(), recorded.accepted())
          << "a restore accepted a log cut at " << end << " of " << log_.size() << ", below the end " << recorded_end_
          << " its committed offsets recorded: it forgot committed batches";
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    }
  }

  void KillSomeZombie() {
    for (Owner& o : owners_) {
      if (o.alive && !o.assigned_latest && Uniform(0, 1) == 0) {
        o.alive = false;  // what it had not sent is lost with it; so are its local commits
        o.outbox.clear();
        o.snapshot.reset();
        return;
      }
    }
  }

  void Truncate() {
    const int64_t limit = pointer_.value_or(0);
    if (limit <= log_start_) return;
    // Past the pointer, a restore must refuse rather than read a partial state.
    const int64_t beyond = limit + Uniform(1, 3);
    EXPECT_EQ(CheckReplayable(pointer_, beyond).code(), absl::StatusCode::kDataLoss);
    log_start_ = Uniform(static_cast<int>(log_start_) + 1, static_cast<int>(limit));
  }

  void CheckCurrentOwner() {
    for (Owner& o : owners_) {
      if (!o.assigned_latest || !o.alive || !o.caught_up || o.failed) continue;
      // Records of zombies still in flight would be fenced: only its own must all be in the log.
      if (!o.outbox.empty()) return;
      EXPECT_EQ(o.local, reference_.state()) << "the current owner's state";
    }
  }

  std::mt19937_64 rng_;
  std::deque<Owner> owners_;
  std::vector<std::string> log_;
  int64_t log_start_ = 0;
  std::optional<int64_t> pointer_;
  int64_t recorded_end_ = 0;                                 // the log's end the assignee's last offset commit recorded
  std::vector<std::pair<int64_t, ChangelogRecord>> losses_;  // (log size when lost, the lost record)
  Reference reference_;
  int next_event_ = 0;
  int restores_ = 0;
  int claims_lost_ = 0;
};

TEST(ChangelogModelTest, RestoresGiveExactlyTheAcceptedCommitsOnce) {
  const int seeds = EnvInt("IDEM_CHANGELOG_MODEL_SEEDS", 20);
  const int ops = EnvInt("IDEM_CHANGELOG_MODEL_OPS", 5000);
  uint64_t accepted = 0, records = 0;
  int restores = 0;
  for (int seed = 1; seed <= seeds && !HasFailure(); ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    Model model(static_cast<uint32_t>(seed));
    model.Run(ops);
    accepted += model.accepted();
    records += model.log_size();
    restores += model.restores();
  }
  std::printf("changelog model: %d seeds x %d operations: %llu log records, %llu accepted batches, %d restores\n",
              seeds, ops, static_cast<unsigned long long>(records), static_cast<unsigned long long>(accepted),
              restores);
}

}  // namespace
}  // namespace idem
