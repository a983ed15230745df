#include "runtime/kafka/owned_partitions.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/kafka/kafka_client.h"
#include "util/status_util.h"

namespace idem::kafka {
namespace {

RecordKind KindOf(ChangelogRecord::Type type) {
  switch (type) {
    case ChangelogRecord::Type::kClaim: return RecordKind::kClaim;
    case ChangelogRecord::Type::kBatch: return RecordKind::kBatch;
    case ChangelogRecord::Type::kSnapshotBegin: return RecordKind::kSnapshotBegin;
    case ChangelogRecord::Type::kSnapshotChunk: return RecordKind::kSnapshotChunk;
    case ChangelogRecord::Type::kSnapshotEnd: return RecordKind::kSnapshotEnd;
  }
  return RecordKind::kBatch;
}

double SecondsSince(Steady::time_point t) { return std::chrono::duration<double>(Steady::now() - t).count(); }

}  // namespace

PartitionLayout OwnedPartitions::LayoutOf(int32_t number) const {
  return PartitionLayout{absl::StrCat(options_->input_topic, "/", number), options_->effect_families};
}

void OwnedPartitions::AssignAll(const std::vector<int32_t>& numbers) {
  std::vector<PartitionLayout> layouts;
  for (int32_t number : numbers) {
    if (owned_.count(number) == 0) layouts.push_back(LayoutOf(number));
  }
  // A failure here costs only time: each restore or activation creates what is still missing.
  if (absl::Status s = set_->PrepareFamilies(layouts); !s.ok()) {
    options_->log(absl::StrCat("preparing the assignment's column families: ", s.ToString()));
  }
  for (int32_t number : numbers) Assign(number);
}

void OwnedPartitions::Assign(int32_t number) {
  if (owned_.count(number) != 0) return;
  auto o = std::make_unique<OwnedPartition>();
  o->number = number;
  o->layout = LayoutOf(number);
  counters_->Add(Counter::kAssignments);
  StartRestore(*o);
  std::lock_guard<std::mutex> lock(mu_);
  owned_[number] = std::move(o);
}

void OwnedPartitions::StartRestore(OwnedPartition& o) {
  o.job = std::make_shared<RestoreJob>();
  o.job->partition = o.number;
  o.job->layout = o.layout;
  o.job->track = o.track;
  restorer_->Submit(o.job);
}

void OwnedPartitions::Stop(int32_t number, bool lost) {
  auto it = owned_.find(number);
  if (it == owned_.end()) return;
  OwnedPartition& o = *it->second;
  counters_->Add(lost ? Counter::kLost : Counter::kRevocations);
  if (o.job != nullptr && !o.job->done) {
    o.job->cancel = true;
    restorer_->Await(*o.job);
  }
  if (o.state == State::kRestoring && o.job != nullptr && o.job->done && o.job->status.ok()) {
    // Restored and claimed before the revocation came: kept as a clean copy under that claim (the
    // last in the log), so that a member it comes back to catches up instead of restoring.
    std::shared_ptr<RestoreJob> job = std::move(o.job);
    Activate(o, *job, /*resume=*/false);
  }
  if (o.state == State::kActive) {
    // Every record of the handled events in the log, then (unless the group gave the partition away)
    // their offsets committed, then the store closed.
    if (producer_ != nullptr) producer_->Flush(absl::Seconds(lost ? 1 : 5)).IgnoreError();
    if (!lost && options_->commit_on_revoke) committer_->Commit({&o}, /*sync=*/true);
    o.processor.reset();
    const bool clean = !o.track->failed() && o.track->AllAcknowledged() && !options_->changelog_topic.empty();
    if (absl::Status s =
            set_->Deactivate(o.layout.name, clean ? KeepLocalCopy::kKeep : KeepLocalCopy::kDrop, o.claim_offset);
        !s.ok()) {
      options_->log(absl::StrCat(o.layout.name, ": deactivating: ", s.ToString()));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  owned_.erase(it);
}

void OwnedPartitions::StopAll() {
  std::vector<int32_t> left;
  for (const auto& [number, o] : owned_) left.push_back(number);
  for (int32_t number : left) Stop(number, /*lost=*/false);
}

void OwnedPartitions::AdvanceRestores() {
  for (auto& [number, op] : owned_) {
    OwnedPartition& o = *op;
    if (o.state != State::kRestoring) continue;
    if (o.job == nullptr) {
      if (Steady::now() >= o.restart_at) StartRestore(o);
      continue;
    }
    if (!o.job->done) continue;
    std::shared_ptr<RestoreJob> job = std::move(o.job);
    counters_->Add(Counter::kRestoredBatchesFenced, job->batches_fenced);
    counters_->Add(Counter::kRestoredBatchesAfterGap, job->batches_after_gap);
    if (job->status.ok()) {
      Activate(o, *job);
      continue;
    }
    if (job->claim_lost) counters_->Add(Counter::kClaimsLost);
    if (job->status.code() == absl::StatusCode::kDataLoss) {
      counters_->Add(Counter::kDataLossPartitions);
      SetState(o, State::kStopped);
      options_->log(absl::StrCat(o.layout.name, ": NOT RESTORED, stays paused: ", job->status.ToString(),
                                 ". Its changelog no longer holds its state; an operator must decide "
                                 "(restore a backup, or accept starting it empty by deleting the group's "
                                 "offset metadata, the changelog and every member's local copy of it)."));
      continue;
    }
    counters_->Add(Counter::kRestoreFailures);
    options_->log(absl::StrCat(o.layout.name, ": restore failed (", job->status.ToString(), "); retrying in ",
                               absl::FormatDuration(o.restart_backoff)));
    o.restart_at = Steady::now() + absl::ToChronoMilliseconds(o.restart_backoff);
    o.restart_backoff = std::min(o.restart_backoff * 2, absl::Seconds(10));
  }
}

void OwnedPartitions::Activate(OwnedPartition& o, const RestoreJob& job, bool resume) {
  // The claim's tokens: above every earlier owner's, below every later one's. Past the last claim
  // there can be, the partition stays paused rather than issue tokens that stop growing.
  absl::StatusOr<ActivateOptions> a = ActivateUnderClaim(job.claim);
  if (!a.ok()) {
    SetState(o, State::kStopped);
    options_->log(absl::StrCat(o.layout.name, ": NOT ACTIVATED, stays paused: ", a.status().ToString()));
    return;
  }
  if (!options_->changelog_topic.empty()) {
    OwnedPartition* op = &o;
    // Hooks run one at a time, in WAL order: each Batch names its predecessor under the claim, and
    // carries the input position its commit was tagged with (PartitionBatch).
    auto batches = std::make_shared<ClaimBatches>(job.claim);
    std::shared_ptr<RecordTrack> track = o.track;
    a->commit_hook = [this, op, track, batches](const PartitionCommit& commit) {
      // Once a record of the partition failed, nothing more is produced for it: later records would
      // build on the missing one. The partition is stopped and rebuilt from the log (CheckPartitions).
      if (track->failed()) return;
      const ChangelogRecord record = batches->Next(commit);
      // A record not enqueued marks the track failed: the partition is then stopped and restored.
      if (absl::Status s = producer_->Produce(options_->changelog_topic, op->number, EncodeChangelogRecord(record),
                                              track, RecordKind::kBatch);
          !s.ok()) {
        options_->log(absl::StrCat(op->layout.name, ": changelog record not sent: ", s.ToString()));
      }
    };
  }
  absl::StatusOr<Partition*> p = set_->Activate(o.layout, *a);
  if (!p.ok()) {
    counters_->Add(Counter::kRestoreFailures);
    options_->log(absl::StrCat(o.layout.name, ": activating: ", p.status().ToString()));
    o.restart_at = Steady::now() + absl::ToChronoMilliseconds(o.restart_backoff);
    return;
  }
  o.partition = *p;
  o.processor = std::make_unique<Processor>(&o.partition->store(), processor_options_);
  o.claim = job.claim;
  o.claim_offset = job.claim_offset;
  o.inherited_pointer = job.pointer;
  o.snapshots.emplace(options_->snapshot_min_bytes, job.log_bytes, o.track->bytes_issued());
  o.restart_backoff = absl::Milliseconds(200);
  counters_->Add(job.caught_up ? Counter::kCatchUps : Counter::kRestores);
  if (!options_->changelog_topic.empty()) counters_->Add(Counter::kClaims);
  // Processing resumes where the group's committed offset says.
  o.next_offset = job.committed >= 0 ? job.committed : -1;
  const int64_t seek = job.committed >= 0 ? job.committed : (reset_earliest_ ? RD_KAFKA_OFFSET_BEGINNING : -1);
  if (resume) Resume(o, seek);
  const double seconds = SecondsSince(o.assigned_at);
  {
    std::lock_guard<std::mutex> lock(mu_);
    o.state = State::kActive;
    last_restore_seconds_ = seconds;
    max_restore_seconds_ = std::max(max_restore_seconds_, seconds);
  }
  options_->log(absl::StrCat(
      o.layout.name, ": resumed at offset ", job.committed, " under claim ", job.claim.ordinal, " (", job.how, ") ",
      absl::StrFormat("%.3f", seconds), " s after assignment",
      job.batches_fenced > 0 ? absl::StrCat("; ", job.batches_fenced, " changelog batches of superseded owners ignored")
                             : ""));
}

void OwnedPartitions::SetState(OwnedPartition& o, State state) {
  std::lock_guard<std::mutex> lock(mu_);
  o.state = state;
}

void OwnedPartitions::PausePartition(OwnedPartition& o, Pause why) {
  PartitionList list = OnePartition(options_->input_topic, o.number, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_pause_partitions(consumer_, list.get());
  std::lock_guard<std::mutex> lock(mu_);
  o.pause = why;
}

void OwnedPartitions::Resume(OwnedPartition& o, int64_t offset) {
  if (offset >= 0 || offset == RD_KAFKA_OFFSET_BEGINNING) {
    PartitionList list = OnePartition(options_->input_topic, o.number, offset);
    if (rd_kafka_error_t* e = rd_kafka_seek_partitions(consumer_, list.get(), 5000)) {
      options_->log(absl::StrCat(o.layout.name, ": seek to ", offset, ": ", rd_kafka_error_string(e)));
      rd_kafka_error_destroy(e);
    }
  }
  PartitionList list = OnePartition(options_->input_topic, o.number, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_resume_partitions(consumer_, list.get());
  std::lock_guard<std::mutex> lock(mu_);
  o.pause = Pause::kNone;
}

void OwnedPartitions::AfterBatch(OwnedPartition& o, PartitionBatch::Stop stop) {
  if (stop == PartitionBatch::Stop::kStoreUnavailable) {
    counters_->Add(Counter::kStorePauses);
    options_->log(absl::StrCat(o.layout.name, ": store unavailable at offset ", o.next_offset,
                               "; partition paused until it recovers"));
    PausePartition(o, Pause::kStore);
  } else if (stop == PartitionBatch::Stop::kRetry) {
    o.resume_at = Steady::now() + absl::ToChronoMilliseconds(options_->retry_pause);
    PausePartition(o, Pause::kRetry);
  }
}

void OwnedPartitions::CheckPartitions() {
  for (auto& [number, op] : owned_) {
    OwnedPartition& o = *op;
    if (o.state != State::kActive) continue;
    if (o.track->failed()) {
      counters_->Add(Counter::kChangelogFailures);
      if (o.track->too_large()) {
        // One commit's record must be one message: its events come back in runs half as long.
        o.max_run = std::max<size_t>(1, std::min(o.max_run, options_->max_batch) / 2);
        options_->log(absl::StrCat(o.layout.name,
                                   ": a batch's changelog record was larger than the producer's message.max.bytes; "
                                   "runs of at most ",
                                   o.max_run, " events from now (raise message.max.bytes, or lower max_batch)"));
      }
      Restart(o, "a changelog record was not acknowledged");
      continue;
    }
    if (o.pause == Pause::kStore && o.processor->healthy()) {
      // The failed write's outcome is unknown: it may have landed here without its changelog record
      // (the hook runs only for writes that returned OK), and later commits would build on it. The
      // local state is not trusted past it: the partition is rebuilt from its changelog.
      Restart(o, "the store recovered from a failed write whose outcome is unknown");
    } else if (o.pause == Pause::kRetry && Steady::now() >= o.resume_at) {
      Resume(o, o.next_offset);
    }
  }
}

void OwnedPartitions::Restart(OwnedPartition& o, std::string_view why) {
  options_->log(absl::StrCat(o.layout.name, ": ", util::ToAbsl(why),
                             "; the partition stops, drops its local copy and is restored from its changelog"));
  if (o.pause == Pause::kNone) PausePartition(o, Pause::kRetry);
  o.processor.reset();
  set_->Deactivate(o.layout.name, KeepLocalCopy::kDrop).IgnoreError();
  OffsetCommitter::Forget(o);
  o.track = std::make_shared<RecordTrack>();
  o.restart_at = Steady::now() + absl::ToChronoMilliseconds(o.restart_backoff);
  o.assigned_at = Steady::now();
  counters_->Add(Counter::kRestarts);
  SetState(o, State::kRestoring);
}

void OwnedPartitions::MaybeSnapshot() {
  if (options_->changelog_topic.empty()) return;
  for (auto& [number, op] : owned_) {
    OwnedPartition& o = *op;
    if (o.state != State::kActive || o.track->failed() || !o.snapshots || !o.snapshots->Due(o.track->bytes_issued())) {
      continue;
    }
    const uint64_t before = o.track->bytes_issued();
    const absl::Status s = o.partition->WriteSnapshot(
        o.claim, o.next_offset, options_->snapshot_chunk_bytes, [&](const ChangelogRecord& r) {
          return producer_->Produce(options_->changelog_topic, o.number, EncodeChangelogRecord(r), o.track,
                                    KindOf(r.type));
        });
    if (!s.ok()) {
      options_->log(absl::StrCat(o.layout.name, ": snapshot: ", s.ToString()));
      continue;
    }
    counters_->Add(Counter::kSnapshots);
    o.snapshots->Wrote(before, o.track->bytes_issued());
  }
}

bool OwnedPartitions::Waiting() const {
  for (const auto& [number, o] : owned_) {
    if (o->state == State::kRestoring || o->pause == Pause::kRetry) return true;
  }
  return false;
}

OwnedPartition* OwnedPartitions::Find(int32_t number) {
  auto it = owned_.find(number);
  return it == owned_.end() ? nullptr : it->second.get();
}

OwnedPartition* OwnedPartitions::Consuming(int32_t number) {
  OwnedPartition* o = Find(number);
  return o != nullptr && o->state == State::kActive && o->pause == Pause::kNone ? o : nullptr;
}

std::vector<OwnedPartition*> OwnedPartitions::All() {
  std::vector<OwnedPartition*> out;
  for (auto& [number, o] : owned_) out.push_back(o.get());
  return out;
}

std::vector<int32_t> OwnedPartitions::Active() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int32_t> out;
  for (const auto& [number, o] : owned_) {
    if (o->state == State::kActive) out.push_back(number);
  }
  return out;
}

void OwnedPartitions::Count(KafkaConsumerStats& s) const {
  std::lock_guard<std::mutex> lock(mu_);
  s.last_restore_seconds = last_restore_seconds_;
  s.max_restore_seconds = max_restore_seconds_;
  for (const auto& [number, o] : owned_) {
    if (o->state == State::kActive) ++s.active_partitions;
    if (o->state != State::kActive || o->pause != Pause::kNone) ++s.paused_partitions;
  }
}

}  // namespace idem::kafka
