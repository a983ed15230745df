// The owner's rules (idem/partition_owner.h): claims, a claim's tokens, the restore plan, a claim's
// Batch records, the snapshot cadence and what a committed input position carries.
#include "idem/partition_owner.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <mutex>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/partitions/restore_session.h"
#include "util/status_util.h"

namespace idem {
namespace {

constexpr std::string_view kPointerPrefix = "idem1 snapshot=";
constexpr std::string_view kMetadataPrefix = "idem2";
// Offsets far beyond any log (past 2^62) are refused, so that offset + 1 never overflows.
constexpr int64_t kMaxOffset = int64_t{1} << 62;

std::optional<int64_t> ParseOffset(std::string_view digits) {
  int64_t offset = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), offset);
  if (ec != std::errc() || end != digits.data() + digits.size() || offset < 0 || offset > kMaxOffset) {
    return std::nullopt;
  }
  return offset;
}

}  // namespace

std::string EncodeCommitMetadata(const CommitMetadata& metadata) {
  std::string out = absl::StrCat(util::ToAbsl(kMetadataPrefix), " log=", std::max<int64_t>(metadata.log_end, 0));
  if (metadata.snapshot) absl::StrAppend(&out, " snapshot=", *metadata.snapshot);
  return out;
}

std::optional<CommitMetadata> DecodeCommitMetadata(std::string_view metadata) {
  CommitMetadata out;
  if (metadata.substr(0, kPointerPrefix.size()) == kPointerPrefix) {  // written before the log's end was kept
    out.snapshot = ParseOffset(metadata.substr(kPointerPrefix.size()));
    if (!out.snapshot) return std::nullopt;
    out.log_end = *out.snapshot + 1;
    return out;
  }
  if (metadata.substr(0, kMetadataPrefix.size()) != kMetadataPrefix) return std::nullopt;
  metadata.remove_prefix(kMetadataPrefix.size());
  bool has_log = false;
  while (!metadata.empty()) {
    if (metadata[0] != ' ') return std::nullopt;
    metadata.remove_prefix(1);
    const size_t space = metadata.find(' ');
    const std::string_view field = metadata.substr(0, space);
    metadata.remove_prefix(space == std::string_view::npos ? metadata.size() : space);
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::string_view key = field.substr(0, eq);
    if (key != "log" && key != "snapshot") continue;  // a field a later release added, whatever its value
    const std::optional<int64_t> value = ParseOffset(field.substr(eq + 1));
    if (!value) return std::nullopt;
    if (key == "log") {
      out.log_end = has_log ? std::max(out.log_end, *value) : *value;  // repeated: the highest end holds
      has_log = true;
    } else {
      out.snapshot = value;
    }
  }
  if (!has_log) return std::nullopt;
  return out;
}

std::string EncodeSnapshotPointer(int64_t changelog_offset) {
  return absl::StrCat(util::ToAbsl(kPointerPrefix), changelog_offset);
}

std::optional<int64_t> DecodeSnapshotPointer(std::string_view metadata) {
  const std::optional<CommitMetadata> decoded = DecodeCommitMetadata(metadata);
  if (!decoded) return std::nullopt;
  return decoded->snapshot;
}

std::string RestorePlan::Describe() const {
  switch (from) {
    case From::kLocalCopy: return absl::StrCat("local copy + ", read_until - read_from, " records of changelog tail");
    case From::kSnapshot: return absl::StrCat("snapshot at changelog offset ", read_from, " + tail to ", read_until);
    case From::kLogStart: return absl::StrCat("changelog from its start, ", read_until, " records");
    case From::kKeepCopy: return "local copy (no changelog)";
    case From::kEmpty: return "empty (no changelog)";
  }
  return "";
}

absl::StatusOr<RestorePlan> PlanRestore(const PartitionLayout& layout, const RestoreFacts& facts) {
  RestorePlan plan;
  const std::optional<LocalCopy>& copy = facts.copy;
  if (copy) plan.copy_claim = copy->claim;
  if (!facts.has_changelog) {
    // The state is this member's own, if it kept a clean copy.
    const bool keep =
        copy && copy->clean && facts.may_use_copy && copy->layout.effect_families == layout.effect_families;
    plan.from = keep ? RestorePlan::From::kKeepCopy : RestorePlan::From::kEmpty;
    return plan;
  }
  // The highest end of the log anyone recorded: with the committed position, or by keeping a copy
  // (its claim's offset). A position committed with no record of the log's end (another tool, or a
  // group that ran without a changelog) means something was processed: an empty log cannot hold it.
  std::optional<int64_t> pointer;
  if (facts.committed) {
    plan.recorded_end = facts.committed->log_end;
    pointer = facts.committed->snapshot;
  } else if (facts.position_committed) {
    plan.recorded_end = 1;
  }
  if (copy && copy->changelog_offset >= 0 && copy->changelog_offset < kMaxOffset) {
    plan.recorded_end = std::max(plan.recorded_end, copy->changelog_offset + 1);
  }
  plan.read_until = facts.log_end;
  // Before anything is read or dropped: a log that ends below what was recorded (recreated, renamed,
  // truncated) would restore a state that forgot committed IDs.
  // (Only the end here: where the log starts matters once the start of the read is chosen — a local
  // copy or a snapshot may not need what retention removed.)
  if (facts.log_start < 0 || facts.log_end < facts.log_start) {
    return absl::InvalidArgumentError(
        absl::StrCat(layout.name, ": a log from ", facts.log_start, " to ", facts.log_end));
  }
  if (absl::Status s = CheckLogEnd(plan.recorded_end, facts.log_end); !s.ok()) {
    return absl::DataLossError(absl::StrCat(layout.name, ": ", s.message()));
  }
  if (facts.may_use_copy && !facts.from_log_start && copy && copy->clean && copy->claim.ordinal > 0 &&
      copy->changelog_offset >= facts.log_start && copy->changelog_offset <= facts.log_end &&
      copy->layout.effect_families == layout.effect_families && (!pointer || *pointer < copy->changelog_offset)) {
    plan.from = RestorePlan::From::kLocalCopy;
    plan.read_from = copy->changelog_offset;
    return plan;
  }
  if (facts.from_log_start) pointer.reset();
  if (absl::Status s = CheckRestorable(pointer, plan.recorded_end, facts.log_start, facts.log_end); !s.ok()) {
    return absl::DataLossError(absl::StrCat(layout.name, ": ", s.message()));
  }
  plan.from = pointer ? RestorePlan::From::kSnapshot : RestorePlan::From::kLogStart;
  plan.read_from = pointer.value_or(0);
  return plan;
}

uint64_t NewClaimant() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}() ^
                             static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::lock_guard<std::mutex> lock(mu);
  uint64_t v = 0;
  while (v == 0) v = rng();
  return v;
}

ClaimId NextClaim(const ClaimId& last) { return ClaimId{last.ordinal + 1, NewClaimant()}; }

absl::StatusOr<TokenRange> TokenRangeOfClaim(uint64_t ordinal) {
  if (ordinal > kMaxClaimOrdinal) {
    return absl::FailedPreconditionError(
        absl::StrCat("claim ", ordinal, " is past the last one the token space holds (", kMaxClaimOrdinal,
                     "): its tokens would wrap below an earlier owner's, and fencing by token would fail"));
  }
  TokenRange range;
  range.floor = ordinal << 40;
  range.limit = ordinal == kMaxClaimOrdinal ? 0 : (ordinal + 1) << 40;
  return range;
}

absl::StatusOr<ActivateOptions> ActivateUnderClaim(const ClaimId& claim) {
  absl::StatusOr<TokenRange> tokens = TokenRangeOfClaim(claim.ordinal);
  if (!tokens.ok()) return tokens.status();
  ActivateOptions a;
  a.claim = claim;
  a.token_floor = tokens->floor;
  a.token_limit = tokens->limit;
  a.use_local_copy = true;
  return a;
}

PartitionRestore::PartitionRestore(std::unique_ptr<engine::RestoreSession> session, const RestorePlan& plan)
    : session_(std::move(session)),
      plan_(plan),
      replayer_(plan.from == RestorePlan::From::kLocalCopy ? ChangelogReplayer(plan.copy_claim, session_->sink())
                : plan.from == RestorePlan::From::kSnapshot
                    ? ChangelogReplayer(ChangelogReplayer::Start::kSnapshot, session_->sink())
                    : ChangelogReplayer(ChangelogReplayer::Start::kLogStart, session_->sink())) {}

PartitionRestore::~PartitionRestore() = default;

absl::StatusOr<std::unique_ptr<PartitionRestore>> PartitionRestore::Begin(PartitionSet* set,
                                                                          const PartitionLayout& layout,
                                                                          const RestorePlan& plan) {
  if (set == nullptr) return absl::InvalidArgumentError("PartitionRestore needs a set");
  if (plan.from == RestorePlan::From::kKeepCopy) {
    return absl::FailedPreconditionError("the plan keeps the local copy as it is: there is nothing to restore");
  }
  absl::StatusOr<std::unique_ptr<engine::RestoreSession>> session = engine::PartitionSetAccess::BeginRestore(
      *set, layout, /*onto_local_copy=*/plan.from == RestorePlan::From::kLocalCopy);
  if (!session.ok()) return session.status();
  return std::unique_ptr<PartitionRestore>(new PartitionRestore(*std::move(session), plan));
}

absl::Status PartitionRestore::Feed(int64_t offset, std::string_view bytes) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (claimed_) return absl::FailedPreconditionError("the claim was confirmed: the restore is fed no further");
  bytes_fed_ += bytes.size();
  absl::StatusOr<ChangelogRecord> record = DecodeChangelogRecord(bytes);
  if (!record.ok()) return Fail(record.status());
  if (plan_.from == RestorePlan::From::kLocalCopy && !fed_any_) {
    // The copy proves only that the log reached its claim's offset; the record there must be that
    // claim, or this is not the log the copy was kept against (recreated and refilled since): its
    // state would hide what the new log's owners committed.
    if (offset != plan_.read_from || record->type != ChangelogRecord::Type::kClaim ||
        record->claim != plan_.copy_claim) {
      return Fail(absl::AbortedError(absl::StrCat(
          "the changelog at offset ", plan_.read_from, " does not hold the claim the local copy was kept under (",
          plan_.copy_claim.ordinal, "): the log is not the one the copy was kept against")));
    }
  }
  fed_any_ = true;
  return Fail(replayer_.Feed(offset, *record));
}

absl::Status PartitionRestore::Usable() const {
  if (finished_) return absl::FailedPreconditionError("the restore has finished");
  return failed_;
}

absl::Status PartitionRestore::Fail(absl::Status status) {
  // The first error ends the restore: the replay may have counted a record its sink never wrote.
  if (!status.ok() && failed_.ok()) failed_ = status;
  return status;
}

ChangelogRecord PartitionRestore::Claim() {
  if (!mine_) {
    mine_ = NextClaim(plan_.from == RestorePlan::From::kEmpty ? plan_.copy_claim : replayer_.current_claim());
  }
  ChangelogRecord record;
  record.type = ChangelogRecord::Type::kClaim;
  record.claim = *mine_;
  return record;
}

absl::Status PartitionRestore::Claimed(int64_t offset) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (!mine_) return absl::FailedPreconditionError("Claimed before Claim");
  if (claimed_) return absl::FailedPreconditionError("the claim was confirmed already");
  if (plan_.from != RestorePlan::From::kEmpty && replayer_.last_offset() < offset) {
    return absl::FailedPreconditionError(
        absl::StrCat("the log was fed up to offset ", replayer_.last_offset(), ", not through the claim at ", offset));
  }
  // What others wrote before our claim counted first: a claim of the same ordinal before ours wins.
  if (plan_.from != RestorePlan::From::kEmpty && replayer_.current_claim() != *mine_) {
    return Fail(absl::AbortedError(absl::StrCat("claim ", mine_->ordinal, " at changelog offset ", offset,
                                                " lost: another member claimed ordinal ",
                                                replayer_.current_claim().ordinal, " first")));
  }
  claimed_ = true;
  claim_offset_ = offset;
  return absl::OkStatus();
}

absl::Status PartitionRestore::Finish() {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (mine_ && !claimed_) return absl::FailedPreconditionError("a claim was made but not confirmed (Claimed)");
  if (plan_.from != RestorePlan::From::kEmpty) {
    if (absl::Status s = replayer_.Finish(); !s.ok()) return Fail(s);
  }
  if (absl::Status s = session_->Finish(); !s.ok()) return Fail(s);
  finished_ = true;
  return absl::OkStatus();
}

ClaimId PartitionRestore::claim() const {
  if (claimed_) return *mine_;
  return plan_.from == RestorePlan::From::kEmpty ? plan_.copy_claim : replayer_.current_claim();
}

ChangelogRecord ClaimBatches::Next(const PartitionCommit& commit) {
  ChangelogRecord record;
  record.type = ChangelogRecord::Type::kBatch;
  record.claim = claim_;
  record.sequence = commit.sequence;
  record.previous_sequence = previous_;
  record.input_offset = commit.tag;
  record.ops = *commit.ops;
  previous_ = commit.sequence;
  return record;
}

bool SnapshotCadence::Due(uint64_t bytes_now) const {
  const uint64_t since = bytes_now >= at_last_ ? bytes_now - at_last_ : 0;  // a count that went back: none
  return since + debt_ >= std::max(min_bytes_, last_size_);
}

void SnapshotCadence::Wrote(uint64_t bytes_before, uint64_t bytes_after) {
  last_size_ = bytes_after >= bytes_before ? bytes_after - bytes_before : 0;
  at_last_ = bytes_after;
  debt_ = 0;
}

}  // namespace idem
