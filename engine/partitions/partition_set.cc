// PartitionSet (idem/partition_set.h): open, activate, deactivate, close, maintenance, stats; the
// public class over its Impl (engine/partitions/partition_set_impl.h).
#include "idem/partition_set.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/db/db_lifecycle.h"
#include "engine/db/disk_guard.h"
#include "engine/db/rocksdb_options.h"
#include "engine/db/shared_directory_fs.h"
#include "engine/partitions/descriptor_budget.h"
#include "engine/partitions/partition.h"
#include "engine/partitions/partition_markers.h"
#include "engine/partitions/partition_set_impl.h"
#include "engine/store/stats_metrics.h"
#include "engine/store/store_access.h"
#include "engine/store/store_registry.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/write_buffer_manager.h"
#include "util/metrics.h"
#include "util/periodic.h"
#include "util/printable.h"

namespace idem {

absl::Status PartitionSet::Impl::Open() {
  Options& store = options_.store;
  if (absl::Status s = engine::ValidateOptions(store); !s.ok()) return s;
  store.maintenance_interval = absl::ZeroDuration();  // the set's thread runs the passes
  cache_ = rocksdb::NewLRUCache(std::max<size_t>(options_.block_cache_bytes, 1 << 20));
  absl::StatusOr<std::unique_ptr<engine::StoreClaim>> claim = engine::StoreClaim::ForOpen(path_, store.env);
  if (!claim.ok() && claim.status().code() != absl::StatusCode::kNotFound) return claim.status();
  if (absl::Status s = PrepareDirectoryFor(); !s.ok()) return s;
  if (!claim.ok()) {
    claim = engine::StoreClaim::ForOpen(path_, store.env);
    if (!claim.ok()) return claim.status();
  }
  claim_ = *std::move(claim);

  db_options_ = engine::DBOptionsFor(store);
  db_options_.create_if_missing = options_.create_if_missing;
  // One descriptor on the DB's directory, not one per column family created (engine/shared_directory_fs.h).
  env_ = std::make_unique<engine::SharedDirectoryEnv>(db_options_.env);
  db_options_.env = env_.get();
  // Every SST file stays open (DBOptionsFor: max_open_files = -1): about two descriptors per
  // partition with data, so a few hundred partitions exhausted a service's default 1 024. A bounded
  // table cache is not the way out: on Debian's RocksDB 7.8.3 it made a partition's records read as
  // another family's values after a reopen (docs/ROCKSDB.md). The soft limit is raised to the hard
  // one instead, and Activate keeps the files within half of it (CheckFilesBudget).
  files_budget_ =
      engine::FilesBudgetCheck(engine::FilesBudget(options_.raise_descriptor_limit), std::chrono::seconds(1));
  db_options_.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(std::max<size_t>(options_.write_buffer_budget_bytes, 1 << 20));
  health_ = std::make_shared<engine::HealthListener>();
  db_options_.listeners.push_back(health_);
  absl::StatusOr<engine::OpenedDb> opened = OpenDb(options_.create_if_missing);
  if (!opened.ok()) return opened.status();
  lifecycle_ = std::make_unique<engine::DbLifecycle>(
      *std::move(opened), [this] { return OpenDb(/*create=*/false); }, health_);
  lifecycle_->SetSubject("the partition set");
  engine::DbLifecycle::Hooks hooks;
  hooks.before_reopen = [this] { SuspendStores(); };
  hooks.on_reopen = [this](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) { return AdoptReopened(db); };
  lifecycle_->SetHooks(std::move(hooks));
  uint64_t memtables = 0;
  {
    engine::DbLifecycle::Pin pin(*lifecycle_);
    if (!pin.ok()) return pin.status();
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status loaded = LoadMarkers(); !loaded.ok()) return loaded;
    if (absl::Status dropped = DropUnmarkedFamilies(); !dropped.ok()) return dropped;
    memtables = engine::MemtableCapacity(lifecycle_->db(), {});
  }

  // The write buffer manager's budget: what every partition's memtables together can hold.
  disk_guard_ = engine::DiskGuard::For(path_, engine::DiskReserveFor(store.min_free_disk_bytes, memtables));
  if (disk_guard_ != nullptr) {
    disk_watch_ = std::make_unique<util::Periodic>(absl::Milliseconds(100), [this] { disk_guard_->Measure(); });
  }
  if (options_.maintenance_interval > absl::ZeroDuration()) {
    maintenance_ = std::make_unique<util::Periodic>(options_.maintenance_interval, [this] { Maintain(); });
  }
  return absl::OkStatus();
}

std::vector<LocalCopy> PartitionSet::Impl::LocalCopies() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LocalCopy> out;
  for (const auto& [name, marker] : markers_) {
    if (active_.count(name) != 0) continue;
    LocalCopy copy;
    copy.layout = PartitionLayout{name, marker.families};
    copy.clean = marker.state == engine::CopyState::kClean || marker.state == engine::CopyState::kRestored;
    copy.claim = marker.claim;
    copy.changelog_offset = marker.changelog_offset;
    out.push_back(std::move(copy));
  }
  return out;
}

absl::StatusOr<Partition*> PartitionSet::Impl::Activate(const PartitionLayout& layout,
                                                        const ActivateOptions& activate) {
  if (absl::Status s = engine::CheckLayout(layout); !s.ok()) return s;
  // Checked before a local copy is dropped or a family created (the store's own check comes after).
  if (activate.token_limit != 0 && activate.token_limit <= activate.token_floor + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ActivateOptions: token_limit ", activate.token_limit, " is not above token_floor ", activate.token_floor,
        " + 1: this owner could issue no token, and tokens would not grow across owners (a claim's ordinal "
        "shifted past 2^24 wraps: use TokenRangeOfClaim)"));
  }
  engine::DbLifecycle::Pin pin(*lifecycle_);  // kUnavailable while the DB reopens: Activate again later
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return absl::FailedPreconditionError("the partition set is closed");
  if (active_.count(layout.name) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("partition '", layout.name, "' is already active"));
  }
  if (restoring_.count(layout.name) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("partition '", layout.name, "' is being restored"));
  }
  if (deactivating_.count(layout.name) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("partition '", layout.name, "' is being deactivated"));
  }
  if (!pin.ok()) return pin.status();
  // New families take descriptors; a local copy's are counted already.
  if (!activate.use_local_copy) {
    if (absl::Status s = CheckFilesBudget(layout); !s.ok()) return s;
  }
  auto marker = markers_.find(layout.name);
  if (activate.use_local_copy) {
    if (marker == markers_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("partition '", layout.name, "' has no local copy"));
    }
    if (marker->second.state != engine::CopyState::kClean && marker->second.state != engine::CopyState::kRestored) {
      return absl::FailedPreconditionError(
          absl::StrCat("the local copy of partition '", layout.name,
                       "' is not clean (its process stopped while it was active, or a restore did not finish): "
                       "restore it from its changelog"));
    }
    if (marker->second.families != layout.effect_families) {
      return absl::FailedPreconditionError(
          absl::StrCat("the local copy of partition '", layout.name, "' has other effect families"));
    }
  }
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> families =
      PrepareFamilies(layout, activate.use_local_copy, engine::CopyState::kActive);
  if (!families.ok()) return families.status();

  auto partition = std::make_shared<engine::PartitionImpl>(layout, *families, activate.claim,
                                                           engine::ClockOf(options_.store), lifecycle_.get());
  Options store = options_.store;
  store.column_family = (*families)[0]->GetName();
  store.create_if_missing = true;
  store.token_floor = activate.token_floor;
  store.token_limit = activate.token_limit;
  std::vector<uint32_t> allowed;
  for (size_t i = 1; i < families->size(); ++i) allowed.push_back((*families)[i]->GetID());
  store.effect_column_families = allowed;
  if (activate.commit_hook) {
    engine::PartitionImpl* p = partition.get();
    auto hook = activate.commit_hook;
    store.commit_hook = [p, hook](const CommittedWrite& w) {
      // The allow-list keeps every write of a commit inside the partition's families.
      absl::StatusOr<std::vector<ChangelogOp>> ops = OpsOfBatch(*w.batch, [p](uint32_t cf) { return p->FamilyOf(cf); });
      if (!ops.ok()) return;
      hook(PartitionCommit{&*ops, w.sequence, w.tag});
    };
  }
  // A partition's Store::Resume is the set's: a fatal error is recovered by reopening the one DB.
  absl::StatusOr<std::unique_ptr<Store>> attached =
      engine::StoreAccess::Attach(lifecycle_->db(), (*families)[0], store,
                                  engine::SharedStoreResources{health_, disk_guard_, [this] { return Resume(); }});
  if (!attached.ok()) return attached.status();
  partition->store_ = *std::move(attached);
  active_[layout.name] = partition;
  markers_[layout.name] = engine::Marker{engine::CopyState::kActive, {}, -1, layout.effect_families};
  ++stats_.activations;
  return partition.get();
}

absl::Status PartitionSet::Impl::Deactivate(std::string_view name, KeepLocalCopy keep, int64_t changelog_offset) {
  std::shared_ptr<engine::PartitionImpl> partition;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = active_.find(std::string(name));
    if (it == active_.end()) {
      return absl::NotFoundError(absl::StrCat("partition '", std::string(name), "' is not active"));
    }
    partition = it->second;
    active_.erase(it);
    // Until its families are dropped or its marker says what the copy is, nothing else may touch
    // the partition (a DropLocalCopy here would leave a copy marked clean with nothing in it).
    deactivating_[std::string(name)] = partition;
  }
  // Closing waits for the store's calls (and a maintenance pass) to end; the families stay valid
  // until it returns.
  Store& store = partition->store();
  const Stats last = store.GetStats();
  absl::Status closed = store.Close();
  partition->Retire();
  // A reopen in progress is waited for: the marker below is written on the DB it leaves open.
  engine::DbLifecycle::Pin pin(*lifecycle_, engine::DbLifecycle::Wait::kWaitForReopen);
  std::lock_guard<std::mutex> lock(mu_);
  deactivating_.erase(std::string(name));
  retired_.push_back(partition);
  fenced_closed_ += last.fenced;
  ++stats_.deactivations;
  if (closed_) return absl::FailedPreconditionError("the partition set was closed during Deactivate");
  // The DB is down: the marker still says active, so the copy comes back unclean (restored from its
  // changelog), which is safe.
  if (!pin.ok()) return pin.status();
  if (keep == KeepLocalCopy::kDrop) {
    absl::Status dropped = DropFamilies(std::string(name), partition->layout().effect_families);
    return closed.ok() ? dropped : closed;
  }
  // A write whose outcome was unknown may be in the local data without its changelog batch: such a
  // copy is kept, but not as clean.
  engine::Marker marker;
  marker.state = closed.ok() && last.storage_errors == 0 ? engine::CopyState::kClean : engine::CopyState::kActive;
  marker.claim = partition->claim();
  marker.changelog_offset = changelog_offset;
  marker.families = partition->layout().effect_families;
  absl::Status written = WriteMarker(std::string(name), marker);
  // A marker write that failed has an unknown outcome: the copy is taken for unclean (the one on disk
  // may still say active), never listed clean.
  if (!written.ok()) marker.state = engine::CopyState::kActive;
  markers_[std::string(name)] = marker;
  return closed.ok() ? written : closed;
}

absl::Status PartitionSet::Impl::DropLocalCopy(std::string_view name) {
  engine::DbLifecycle::Pin pin(*lifecycle_, engine::DbLifecycle::Wait::kWaitForReopen);
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key(name);
  if (closed_) return absl::FailedPreconditionError("the partition set is closed");
  if (active_.count(key) != 0 || restoring_.count(key) != 0 || deactivating_.count(key) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("partition '", key, "' is active, being deactivated or being restored"));
  }
  auto marker = markers_.find(key);
  if (marker == markers_.end()) return absl::NotFoundError(absl::StrCat("no local copy of partition '", key, "'"));
  if (!pin.ok()) return pin.status();  // the DB is down
  if (absl::Status s = DropFamilies(key, marker->second.families); !s.ok()) return s;
  ++stats_.local_copies_dropped;
  return absl::OkStatus();
}

Partition* PartitionSet::Impl::Find(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = active_.find(std::string(name));
  return it == active_.end() ? nullptr : it->second.get();
}

std::vector<std::string> PartitionSet::Impl::ActiveNames() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, p] : active_) out.push_back(name);
  return out;
}

PartitionSetStats PartitionSet::Impl::GetStats() const {
  std::vector<std::shared_ptr<engine::PartitionImpl>> partitions = Active();
  std::lock_guard<std::mutex> lock(mu_);
  PartitionSetStats out = stats_;
  out.fenced = fenced_closed_;
  for (const auto& p : partitions) out.fenced += p->store().GetStats().fenced;
  out.active_partitions = active_.size();
  return out;
}

std::string PartitionSet::Impl::ToPrometheus() const {
  util::Metrics metrics;
  for (const auto& p : Active()) {
    engine::AddStoreStats(p->store().GetStats(), absl::StrCat("partition=\"", util::LabelValue(p->layout().name), "\""),
                          metrics);
  }
  const PartitionSetStats s = GetStats();
  using util::MetricType;
  auto counter = [&](const char* name, const char* help, uint64_t value) {
    metrics.Add(name, help, MetricType::kCounter, "", value);
  };
  counter("idem_partition_set_activations_total", "Partitions activated (ownership claims).", s.activations);
  counter("idem_partition_set_deactivations_total", "Partitions deactivated.", s.deactivations);
  counter("idem_partition_set_restores_total", "Partitions restored from their changelog.", s.restores);
  counter("idem_partition_set_catch_ups_total", "Local copies brought up to date with their changelog's tail.",
          s.catch_ups);
  counter("idem_partition_set_records_restored_total", "Snapshot entries and tail batches restored.",
          s.records_restored);
  metrics.Add("idem_partition_set_restore_seconds_total", "Time spent restoring partitions.", MetricType::kCounter, "",
              s.restore_seconds);
  counter("idem_partition_set_local_copies_dropped_total", "Local partition copies dropped.", s.local_copies_dropped);
  counter("idem_partition_set_reopens_total", "Recoveries that closed and reopened the DB.", s.reopens);
  counter("idem_partition_set_fenced_total", "Calls refused below a partition's ownership floor.", s.fenced);
  metrics.Add("idem_partition_set_active_partitions", "Partitions active now.", MetricType::kGauge, "",
              static_cast<uint64_t>(s.active_partitions));
  return metrics.Prometheus();
}

absl::Status PartitionSet::Impl::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return close_status_;
    closed_ = true;
  }
  if (maintenance_) maintenance_->Stop();
  if (disk_watch_) disk_watch_->Stop();
  // Active partitions are closed, not deactivated: their markers still say active, so they come
  // back unclean. Whether each one's changelog got every commit is its owner's to say (Deactivate).
  absl::Status first;
  std::vector<std::shared_ptr<engine::PartitionImpl>> open = Active();
  {
    // A Deactivate in progress closes its store outside the lock: close it here too (Store::Close
    // may race itself), so no call of it is in flight when the DB goes.
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, p] : deactivating_) open.push_back(p);
  }
  for (const auto& p : open) {
    absl::Status s = p->store().Close();
    p->Retire();
    if (!s.ok() && first.ok()) first = s;
  }
  // Waits for a Resume in progress (whose hooks take mu_: not held here), then for a restore's write or
  // a snapshot in progress; later ones are refused.
  if (lifecycle_ != nullptr) {
    if (absl::Status s = lifecycle_->Close(); !s.ok() && first.ok()) first = s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Callers may still hold the partitions (a handler mid-run): their closed Stores answer
  // kFailedPrecondition until the set is destroyed.
  for (auto& [name, p] : active_) retired_.push_back(p);
  active_.clear();
  claim_.reset();
  close_status_ = first;
  return first;
}

std::vector<std::shared_ptr<engine::PartitionImpl>> PartitionSet::Impl::Active() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<engine::PartitionImpl>> out;
  for (const auto& [name, p] : active_) out.push_back(p);
  return out;
}

void PartitionSet::Impl::Maintain() {
  for (const auto& p : Active()) {
    engine::StoreAccess::RunMaintenance(p->store()).IgnoreError();  // surfaces through Health()
  }
}

absl::StatusOr<std::unique_ptr<PartitionSet>> PartitionSet::Open(const PartitionSetOptions& options,
                                                                 const std::string& path) {
  auto impl = std::make_unique<Impl>(options, path);
  if (absl::Status s = impl->Open(); !s.ok()) return s;
  return std::unique_ptr<PartitionSet>(new PartitionSet(std::move(impl)));
}

PartitionSet::PartitionSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PartitionSet::~PartitionSet() = default;

std::vector<LocalCopy> PartitionSet::LocalCopies() const { return impl_->LocalCopies(); }
absl::StatusOr<Partition*> PartitionSet::Activate(const PartitionLayout& layout, const ActivateOptions& options) {
  return impl_->Activate(layout, options);
}
absl::Status PartitionSet::PrepareFamilies(const std::vector<PartitionLayout>& layouts) {
  return impl_->PrepareFamilies(layouts);
}
absl::Status PartitionSet::Deactivate(std::string_view name, KeepLocalCopy keep, int64_t changelog_offset) {
  return impl_->Deactivate(name, keep, changelog_offset);
}
absl::Status PartitionSet::DropLocalCopy(std::string_view name) { return impl_->DropLocalCopy(name); }
Partition* PartitionSet::Find(std::string_view name) const { return impl_->Find(name); }
std::vector<std::string> PartitionSet::ActiveNames() const { return impl_->ActiveNames(); }
absl::Status PartitionSet::Resume() { return impl_->Resume(); }
PartitionSetStats PartitionSet::GetStats() const { return impl_->GetStats(); }
std::string PartitionSet::ToPrometheus() const { return impl_->ToPrometheus(); }
absl::Status PartitionSet::Close() { return impl_->Close(); }
rocksdb::DB* PartitionSet::db() const { return impl_->db(); }

}  // namespace idem
