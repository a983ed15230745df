// One partition of a set as its users hold it (PartitionImpl: its Store, its family handles, its reads
// under a Pin of the set's DB lifecycle) and what a restore writes through (PinnedSink).
// Kept by the set until it is destroyed, so that a caller still holding a Partition* never touches freed
// memory.
#ifndef IDEM_ENGINE_PARTITIONS_PARTITION_H_
#define IDEM_ENGINE_PARTITIONS_PARTITION_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/db/db_lifecycle.h"
#include "engine/store/store_access.h"
#include "idem/changelog.h"
#include "idem/clock.h"
#include "idem/partition_set.h"
#include "idem/partition_state.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "util/status_util.h"

namespace idem::engine {

class PartitionImpl : public Partition {
 public:
  PartitionImpl(PartitionLayout layout, std::vector<rocksdb::ColumnFamilyHandle*> families, ClaimId claim,
                std::shared_ptr<Clock> clock, const DbLifecycle* db)
      : layout_(std::move(layout)), families_(std::move(families)), claim_(claim), clock_(std::move(clock)), db_(db) {}

  absl::StatusOr<std::optional<std::string>> Get(size_t index, std::string_view key) const override {
    DbLifecycle::Pin pin(*db_);
    if (retired_.load(std::memory_order_acquire)) {
      return absl::FailedPreconditionError(absl::StrCat("partition '", layout_.name, "' is no longer active"));
    }
    if (!pin.ok()) return pin.status();
    rocksdb::ColumnFamilyHandle* cf = family(index);
    if (cf == nullptr) return absl::InvalidArgumentError(absl::StrCat("partition family ", index, " does not exist"));
    std::string value;
    const rocksdb::Status s =
        db_->db()->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return util::FromRocks(s, "reading partition state");
    return std::optional<std::string>(std::move(value));
  }

  const PartitionLayout& layout() const override { return layout_; }
  Store& store() override { return *store_; }
  rocksdb::ColumnFamilyHandle* family(size_t index) const override {
    std::lock_guard<std::mutex> lock(families_mu_);
    if (retired_.load(std::memory_order_acquire)) return nullptr;  // dropped or closed with the set
    return index < families_.size() ? families_[index] : nullptr;
  }

  absl::Status WriteSnapshot(ClaimId claim, int64_t input_offset, size_t chunk_bytes,
                             const std::function<absl::Status(const ChangelogRecord&)>& emit) override {
    // The DB and its handles stay as they are until the snapshot is released.
    DbLifecycle::Pin pin(*db_);
    if (retired_.load(std::memory_order_acquire)) {
      return absl::FailedPreconditionError(absl::StrCat("partition '", layout_.name, "' is no longer active"));
    }
    if (!pin.ok()) return pin.status();
    rocksdb::DB* db = db_->db();
    if (store_->db() != db) return absl::UnavailableError("the partition set is reopening its DB");
    const std::vector<rocksdb::ColumnFamilyHandle*> families = this->families();
    const rocksdb::Snapshot* snapshot = nullptr;
    absl::Status begun;
    bool begin_sent = false;
    // The snapshot and its Begin with no hook running: a batch the snapshot misses reaches the
    // changelog after the Begin, one it holds carries a sequence at or below the Begin's.
    engine::StoreAccess::WithCommitOrder(*store_, [&] {
      snapshot = db->GetSnapshot();
      ChangelogRecord begin;
      begin.type = ChangelogRecord::Type::kSnapshotBegin;
      begin.claim = claim;
      begin.sequence = snapshot->GetSequenceNumber();
      begin.input_offset = input_offset;
      begun = emit(begin);
    });
    absl::Status s = begun;
    if (s.ok()) {
      s = WriteChangelogSnapshot(db, snapshot, families, claim, snapshot->GetSequenceNumber(), input_offset,
                                 clock_->Now(), chunk_bytes, [&](const ChangelogRecord& r) {
                                   if (!begin_sent) {  // sent above, under the commit order
                                     begin_sent = true;
                                     return absl::OkStatus();
                                   }
                                   return emit(r);
                                 });
    }
    db->ReleaseSnapshot(snapshot);
    return s;
  }

  std::optional<uint32_t> FamilyOf(uint32_t cf_id) const {
    std::lock_guard<std::mutex> lock(families_mu_);
    for (size_t i = 0; i < families_.size(); ++i) {
      if (families_[i]->GetID() == cf_id) return static_cast<uint32_t>(i);
    }
    return std::nullopt;
  }

  std::vector<rocksdb::ColumnFamilyHandle*> families() const {
    std::lock_guard<std::mutex> lock(families_mu_);
    return families_;
  }
  // The set reopened its DB: the same families, new handles.
  void SetFamilies(std::vector<rocksdb::ColumnFamilyHandle*> families) {
    std::lock_guard<std::mutex> lock(families_mu_);
    families_ = std::move(families);
  }
  ClaimId claim() const { return claim_; }
  // Deactivated or closed: its Store answers kFailedPrecondition, its reads too. The object lives on
  // (the set keeps it until it is destroyed) so that a caller still holding it never touches freed
  // memory.
  void Retire() { retired_.store(true, std::memory_order_release); }
  std::unique_ptr<Store> store_;

 private:
  const PartitionLayout layout_;
  mutable std::mutex families_mu_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;  // replaced when the set reopens its DB
  const ClaimId claim_;
  const std::shared_ptr<Clock> clock_;
  const DbLifecycle* const db_;
  std::atomic<bool> retired_{false};
};

// What a restore's feed writes through: every call runs with the DB pinned, and once the set closes or
// reopens its DB (the handles the restore holds are gone: its generation moved) every later call is
// refused, so the feed stops and the restore fails instead of writing through a destroyed handle.
class PinnedSink : public ChangelogReplayer::Sink {
 public:
  // REQUIRES: a Pin is held (generation() is read).
  PinnedSink(ChangelogReplayer::Sink* sink, const DbLifecycle* db)
      : sink_(sink), db_(db), generation_(db->generation()) {}
  absl::Status SnapshotEntry(const ChangelogOp& entry) override {
    return Pinned([&] { return sink_->SnapshotEntry(entry); });
  }
  absl::Status SnapshotDone() override {
    return Pinned([&] { return sink_->SnapshotDone(); });
  }
  absl::Status Apply(const ChangelogRecord& batch) override {
    return Pinned([&] { return sink_->Apply(batch); });
  }
  // Whether the DB the restore began on is still the open one.
  bool intact() const {
    DbLifecycle::Pin pin(*db_);
    return pin.ok() && db_->generation() == generation_;
  }

 private:
  template <typename F>
  absl::Status Pinned(F&& f) {
    DbLifecycle::Pin pin(*db_);
    if (!pin.ok() || db_->generation() != generation_) {
      return absl::UnavailableError("the partition set closed or reopened its DB during the restore");
    }
    return f();
  }
  ChangelogReplayer::Sink* const sink_;
  const DbLifecycle* const db_;
  const uint64_t generation_;
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_PARTITIONS_PARTITION_H_
