// The fence rule and the restore order of idem/changelog.h. Why each rule holds is in docs/SCALING.md
// ("Why the rule is safe"); the randomized model test (tests/changelog_model_test.cc) checks them
// against a reference model of "exactly the accepted commits, once".
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "idem/changelog.h"

namespace idem {
namespace {

bool Before(const ChangelogOp& a, const ChangelogOp& b) {
  return a.family != b.family ? a.family < b.family : a.key < b.key;
}

}  // namespace

ChangelogReplayer::ChangelogReplayer(Start start, Sink* sink) : start_(start), sink_(sink) {}

ChangelogReplayer::ChangelogReplayer(ClaimId copy_claim, Sink* sink)
    : start_(Start::kLocalCopy), sink_(sink), copy_claim_(copy_claim), current_(copy_claim) {}

absl::Status ChangelogReplayer::Feed(int64_t offset, std::string_view bytes) {
  absl::StatusOr<ChangelogRecord> record = DecodeChangelogRecord(bytes);
  if (!record.ok()) {
    return absl::DataLossError(absl::StrCat("changelog offset ", offset, ": ", record.status().message()));
  }
  return Feed(offset, *record);
}

absl::Status ChangelogReplayer::Feed(int64_t offset, const ChangelogRecord& record) {
  if (offset <= last_offset_) {
    return absl::InvalidArgumentError(
        absl::StrCat("changelog offsets must increase: ", offset, " after ", last_offset_));
  }
  last_offset_ = offset;
  using Type = ChangelogRecord::Type;
  if (!started_) {
    started_ = true;
    if (start_ == Start::kSnapshot) {
      if (record.type != Type::kSnapshotBegin) {
        return absl::DataLossError(
            absl::StrCat("changelog offset ", offset, " was to begin a snapshot and holds another record"));
      }
      // The snapshot's writer counted when it began (its pointer was saved while it owned the
      // partition): its claim is the one later batches are held to.
      in_snapshot_ = true;
      snapshot_id_ = record.sequence;
      snapshot_claim_ = record.claim;
      current_ = record.claim;
      input_offset_ = record.input_offset;
      return absl::OkStatus();
    }
  }
  switch (record.type) {
    case Type::kClaim:
      if (record.claim.ordinal == current_.ordinal + 1) {
        current_ = record.claim;
        claim_last_ = 0;  // its batches start here
        claim_broken_ = false;
      } else if (record.claim == current_ && start_ == Start::kLocalCopy && applied_ == 0 && fenced_ == 0) {
        claim_last_ = 0;  // a local copy's catch-up that starts at its own claim: the order is known
      } else {
        ++claims_lost_;  // the ordinal was taken by an earlier claim, or skips one
      }
      return absl::OkStatus();
    case Type::kBatch: return Accept(record);
    case Type::kSnapshotBegin:
    case Type::kSnapshotChunk:
    case Type::kSnapshotEnd:
      // Only the snapshot we started from matters; later ones hold what the batches give anyway.
      if (in_snapshot_ && !snapshot_done_ && record.sequence == snapshot_id_ && record.claim == snapshot_claim_) {
        return OnSnapshotRecord(record);
      }
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status ChangelogReplayer::Accept(const ChangelogRecord& batch) {
  if (start_ == Start::kLocalCopy && batch.claim == copy_claim_ && batch.claim != current_) {
    return absl::AbortedError(absl::StrCat("the local copy is stale: claim ", copy_claim_.ordinal,
                                           " was superseded while its owner still committed (changelog offset ",
                                           last_offset_, ")"));
  }
  if (batch.claim != current_ || current_.ordinal == 0) {
    ++fenced_;  // its writer had been replaced (or never claimed) when the batch reached the log
    return absl::OkStatus();
  }
  if (claim_broken_) return AfterGap();
  for (const ChangelogOp& op : batch.ops) {
    if (op.kind != ChangelogOp::Kind::kPut && op.kind != ChangelogOp::Kind::kDelete &&
        op.kind != ChangelogOp::Kind::kSingleDelete) {
      return absl::DataLossError(absl::StrCat("changelog offset ", last_offset_,
                                              ": a batch holds an operation of kind ", static_cast<int>(op.kind)));
    }
  }
  // A batch of the snapshot's writer at or below the snapshot's sequence is in the snapshot already.
  const bool snapshot_writer = start_ == Start::kSnapshot && batch.claim == snapshot_claim_;
  if (snapshot_writer && batch.sequence <= snapshot_id_) return absl::OkStatus();
  if (batch.previous_sequence.has_value()) {
    // Its predecessor must be the last batch of the claim that counted; replay that started inside the
    // claim knows only that a snapshot's writer had every batch at or below the snapshot in it.
    const uint64_t previous = *batch.previous_sequence;
    // A batch of this claim that counted already (the log holds it twice: a producer's retry outside
    // its idempotent session, a copied topic) is not a gap: it is ignored, its successor still counts.
    if (claim_last_.has_value() && batch.sequence <= *claim_last_) {
      ++duplicates_;
      return absl::OkStatus();
    }
    const bool in_order =
        claim_last_.has_value() ? previous == *claim_last_ : !snapshot_writer || previous <= snapshot_id_;
    if (!in_order) {
      claim_broken_ = true;
      return AfterGap();
    }
  }
  claim_last_ = batch.sequence;
  ++applied_;
  if (batch.input_offset >= 0) input_offset_ = batch.input_offset;
  if (in_snapshot_ && !snapshot_done_) {
    held_back_.push_back(batch);
    return absl::OkStatus();
  }
  return sink_->Apply(batch);
}

absl::Status ChangelogReplayer::AfterGap() {
  ++after_gap_;
  // A local copy holds every batch of its own claim, the missing one too: the log counts less than the
  // copy has, so the copy cannot be caught up.
  if (start_ == Start::kLocalCopy && current_ == copy_claim_) {
    return absl::AbortedError(absl::StrCat("the local copy is stale: a batch of its claim ", copy_claim_.ordinal,
                                           " is missing from the changelog before offset ", last_offset_,
                                           ", so the log does not count what the copy holds"));
  }
  return absl::OkStatus();
}

absl::Status ChangelogReplayer::OnSnapshotRecord(const ChangelogRecord& record) {
  using Type = ChangelogRecord::Type;
  if (record.type == Type::kSnapshotBegin) {
    return absl::DataLossError("the snapshot restored from begins twice");
  }
  if (record.type == Type::kSnapshotChunk) {
    for (const ChangelogOp& entry : record.ops) {
      if (entry.kind != ChangelogOp::Kind::kPut) {
        return absl::DataLossError(absl::StrCat("snapshot entry ", entries_, " is not a put: a snapshot holds values"));
      }
      if (last_entry_ && !Before(*last_entry_, entry)) {
        return absl::DataLossError(
            absl::StrCat("snapshot entries out of order at entry ", entries_, " (family ", entry.family, ")"));
      }
      if (absl::Status s = sink_->SnapshotEntry(entry); !s.ok()) return s;
      checksum_ = SnapshotChecksum(checksum_, entry);
      ++entries_;
      last_entry_ = entry;
    }
    return absl::OkStatus();
  }
  if (record.entry_count != entries_ || record.checksum != checksum_) {
    return absl::DataLossError(absl::StrCat("the snapshot restored from ends with ", record.entry_count,
                                            " entries and checksum ", record.checksum, "; its chunks held ", entries_,
                                            " with checksum ", checksum_));
  }
  snapshot_done_ = true;
  last_entry_.reset();
  if (absl::Status s = sink_->SnapshotDone(); !s.ok()) return s;
  std::vector<ChangelogRecord> held = std::move(held_back_);
  held_back_.clear();
  for (const ChangelogRecord& batch : held) {
    if (absl::Status s = sink_->Apply(batch); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ChangelogReplayer::Finish() {
  if (start_ == Start::kSnapshot && !started_) {
    return absl::DataLossError("no changelog record at the snapshot pointer");
  }
  if (start_ == Start::kSnapshot && !snapshot_done_) {
    return absl::DataLossError(absl::StrCat("the snapshot restored from never ended (", entries_,
                                            " entries read): the log was cut inside it"));
  }
  return absl::OkStatus();
}

absl::Status CheckRestorable(std::optional<int64_t> pointer, int64_t recorded_end, int64_t log_start_offset,
                             int64_t log_end_offset) {
  if (log_start_offset < 0 || log_end_offset < log_start_offset || recorded_end < 0 || (pointer && *pointer < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("CheckRestorable: a log from ", log_start_offset, " to ",
                                                   log_end_offset, ", recorded end ", recorded_end,
                                                   pointer ? absl::StrCat(", pointer ", *pointer) : ""));
  }
  if (absl::Status s = CheckLogEnd(std::max(recorded_end, pointer ? *pointer + 1 : 0), log_end_offset); !s.ok()) {
    return s;
  }
  return CheckReplayable(pointer, log_start_offset);
}

absl::Status CheckLogEnd(int64_t recorded_end, int64_t log_end_offset) {
  if (log_end_offset >= recorded_end) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(
      "the changelog ends at offset ", log_end_offset, " but offset ", recorded_end - 1,
      " was recorded as written (by the group's committed offsets, a local copy or a snapshot pointer): the "
      "log was recreated, renamed or truncated; restoring would silently forget committed IDs and apply their "
      "redeliveries again"));
}

absl::Status CheckReplayable(std::optional<int64_t> pointer, int64_t log_start_offset) {
  const int64_t first = pointer.value_or(0);
  if (log_start_offset > first) {
    return absl::DataLossError(absl::StrCat(
        "the changelog starts at offset ", log_start_offset, " but the restore must read from ", first,
        pointer ? " (the last snapshot)" : " (no snapshot was saved)",
        ": its retention removed state that no snapshot holds; restoring would silently forget committed IDs"));
  }
  return absl::OkStatus();
}

}  // namespace idem
