// Restores as sessions (engine/partitions/restore_session.h): begun under the set's lock, fed without
// it through the DB pin, finished or abandoned; PartitionSet::Restore and CatchUp run one around a feed.
#include "engine/partitions/restore_session.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/db/db_lifecycle.h"
#include "engine/partitions/partition.h"
#include "engine/partitions/partition_markers.h"
#include "engine/partitions/partition_set_impl.h"
#include "idem/changelog.h"
#include "idem/partition_set.h"

namespace idem {

// A restore in progress (engine/partitions/restore_session.h). Its writes go through the pin: a Close
// or a reopening Resume meanwhile waits for the write in progress, then refuses the rest.
class RestoreSessionImpl : public engine::RestoreSession {
 public:
  RestoreSessionImpl(PartitionSet::Impl* set, PartitionLayout layout, bool onto_local_copy,
                     std::unique_ptr<ChangelogRestore> restore, const engine::DbLifecycle* db)
      : set_(set),
        layout_(std::move(layout)),
        onto_local_copy_(onto_local_copy),
        restore_(std::move(restore)),
        pinned_(restore_.get(), db) {}
  ~RestoreSessionImpl() override {
    if (!finished_) {
      set_->EndRestore(layout_, onto_local_copy_, std::move(restore_), started_,
                       PartitionSet::Impl::RestoreEnd::kAbandoned)
          .IgnoreError();
    }
  }
  ChangelogReplayer::Sink* sink() override { return &pinned_; }
  absl::Status Finish() override {
    if (finished_) return absl::FailedPreconditionError("the restore has ended");
    finished_ = true;
    return set_->EndRestore(
        layout_, onto_local_copy_, std::move(restore_), started_,
        pinned_.intact() ? PartitionSet::Impl::RestoreEnd::kFinished : PartitionSet::Impl::RestoreEnd::kDbLost);
  }

 private:
  PartitionSet::Impl* const set_;
  const PartitionLayout layout_;
  const bool onto_local_copy_;
  std::unique_ptr<ChangelogRestore> restore_;
  engine::PinnedSink pinned_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool finished_ = false;
};

absl::StatusOr<std::unique_ptr<engine::RestoreSession>> PartitionSet::Impl::BeginRestore(const PartitionLayout& layout,
                                                                                         bool onto_local_copy) {
  if (absl::Status s = engine::CheckLayout(layout); !s.ok()) return s;
  engine::DbLifecycle::Pin pin(*lifecycle_);  // kUnavailable while the DB reopens: Restore again later
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return absl::FailedPreconditionError("the partition set is closed");
  if (active_.count(layout.name) != 0 || restoring_.count(layout.name) != 0 || deactivating_.count(layout.name) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("partition '", layout.name, "' is active, being deactivated or being restored"));
  }
  if (!pin.ok()) return pin.status();
  if (!onto_local_copy) {
    if (absl::Status s = CheckFilesBudget(layout); !s.ok()) return s;
  }
  auto marker = markers_.find(layout.name);
  if (onto_local_copy) {
    if (marker == markers_.end() ||
        (marker->second.state != engine::CopyState::kClean && marker->second.state != engine::CopyState::kRestored) ||
        marker->second.families != layout.effect_families) {
      return absl::FailedPreconditionError(
          absl::StrCat("partition '", layout.name, "' has no clean local copy with these families"));
    }
  }
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> families =
      PrepareFamilies(layout, onto_local_copy, engine::CopyState::kRestoring);
  if (!families.ok()) return families.status();
  markers_[layout.name] = engine::Marker{engine::CopyState::kRestoring, {}, -1, layout.effect_families};
  ChangelogRestore::Target target;
  target.db = lifecycle_->db();
  target.families = *families;
  target.store_options = options_.store;
  target.store_options.column_family = (*families)[0]->GetName();
  target.scratch_dir = absl::StrCat(path_, "/restore-", ++restore_counter_);
  target.onto_local_copy = onto_local_copy;
  absl::StatusOr<std::unique_ptr<ChangelogRestore>> created = ChangelogRestore::Create(std::move(target));
  if (!created.ok()) {
    // Nothing was restored: the families go (a local copy too: its marker no longer says clean), so no
    // half-made partition is left for the next Open to find.
    DropFamilies(layout.name, layout.effect_families).IgnoreError();
    if (onto_local_copy) ++stats_.local_copies_dropped;
    return created.status();
  }
  restoring_.insert(layout.name);
  return std::make_unique<RestoreSessionImpl>(this, layout, onto_local_copy, *std::move(created), lifecycle_.get());
}

absl::Status PartitionSet::Impl::EndRestore(const PartitionLayout& layout, bool onto_local_copy,
                                            std::unique_ptr<ChangelogRestore> restore,
                                            std::chrono::steady_clock::time_point started, RestoreEnd end) {
  // A reopen in progress is waited for: the families go, or the marker is written, on the DB it leaves.
  engine::DbLifecycle::Pin pin(*lifecycle_, engine::DbLifecycle::Wait::kWaitForReopen);
  std::lock_guard<std::mutex> lock(mu_);
  restoring_.erase(layout.name);
  if (closed_) {
    restore.reset();
    return absl::FailedPreconditionError("the partition set was closed during the restore");
  }
  if (!pin.ok()) {
    // The DB is down: the marker says restoring, so the families go at the next open (or the next
    // restore of this partition).
    restore.reset();
    return pin.status();
  }
  if (end != RestoreEnd::kFinished) {
    DropFamilies(layout.name, layout.effect_families).IgnoreError();
    if (onto_local_copy) ++stats_.local_copies_dropped;
    if (end == RestoreEnd::kDbLost) {
      return absl::UnavailableError("the partition set closed or reopened its DB during the restore");
    }
    return absl::AbortedError("the restore was abandoned");
  }
  engine::Marker restored;
  restored.state = engine::CopyState::kRestored;
  restored.families = layout.effect_families;
  if (absl::Status s = WriteMarker(layout.name, restored); !s.ok()) {
    // Not marked restored: the families go, as for any restore that did not end well.
    DropFamilies(layout.name, layout.effect_families).IgnoreError();
    if (onto_local_copy) ++stats_.local_copies_dropped;
    return s;
  }
  markers_[layout.name] = restored;
  ++(onto_local_copy ? stats_.catch_ups : stats_.restores);
  stats_.records_restored += restore->entries_restored() + restore->batches_written();
  stats_.restore_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<engine::RestoreSession>> engine::PartitionSetAccess::BeginRestore(
    PartitionSet& set, const PartitionLayout& layout, bool onto_local_copy) {
  return set.impl_->BeginRestore(layout, onto_local_copy);
}

namespace {

absl::Status RunRestore(PartitionSet& set, const PartitionLayout& layout, bool onto_local_copy,
                        const std::function<absl::Status(ChangelogReplayer::Sink* sink)>& feed) {
  absl::StatusOr<std::unique_ptr<engine::RestoreSession>> session =
      engine::PartitionSetAccess::BeginRestore(set, layout, onto_local_copy);
  if (!session.ok()) return session.status();
  absl::Status fed = feed((*session)->sink());
  if (fed.ok()) fed = (*session)->Finish();
  return fed;  // a session not finished is aborted as it goes: its families dropped
}

}  // namespace

absl::Status PartitionSet::Restore(const PartitionLayout& layout,
                                   const std::function<absl::Status(ChangelogReplayer::Sink* sink)>& feed) {
  return RunRestore(*this, layout, /*onto_local_copy=*/false, feed);
}

absl::Status PartitionSet::CatchUp(const PartitionLayout& layout,
                                   const std::function<absl::Status(ChangelogReplayer::Sink* sink)>& feed) {
  return RunRestore(*this, layout, /*onto_local_copy=*/true, feed);
}

}  // namespace idem
