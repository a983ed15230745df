// PartitionSet: many partition stores on one RocksDB (idem/partition_set.h).
//
// On disk: every partition is column families named "p:<name>:0" (idem's records) and
// "p:<name>:<i>:<family>" (effect family i), and a marker in the default column family under
// "\0idem\0partition\0<name>" saying what state the copy is in (active, clean, restored), the claim and
// changelog offset noted at deactivation, and the effect families. The marker is written before the
// partition is used and rewritten at deactivation, so a crash leaves "active": unclean.
#include "idem/partition_set.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
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
#include "engine/partitions/restore_session.h"
#include "engine/records/store_metadata.h"
#include "engine/store/stats_metrics.h"
#include "engine/store/store_access.h"
#include "engine/store/store_registry.h"
#include "idem/partition_state.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "util/metrics.h"
#include "util/periodic.h"
#include "util/printable.h"
#include "util/status_util.h"
#include "util/varint.h"

namespace idem {
namespace {

using engine::CheckLayout;
using engine::CopyState;
using engine::DbPin;
using engine::DecodeMarker;
using engine::EffectFamilyName;
using engine::EncodeMarker;
using engine::kPartitionMarkerPrefix;
using engine::Marker;
using engine::MarkerKey;
using engine::PartitionImpl;
using engine::PartitionOfRecordsFamily;
using engine::PinnedSink;
using engine::RecordsFamilyName;

}  // namespace

// ---------------------------------------------------------------------------------------------------

class PartitionSet::Impl {
 public:
  Impl(PartitionSetOptions options, std::string path) : options_(std::move(options)), path_(std::move(path)) {}
  ~Impl() { Close().IgnoreError(); }

  absl::Status Open() {
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
    files_budget_ = engine::FilesBudget(options_.raise_descriptor_limit);
    db_options_.write_buffer_manager =
        std::make_shared<rocksdb::WriteBufferManager>(std::max<size_t>(options_.write_buffer_budget_bytes, 1 << 20));
    health_ = std::make_shared<engine::HealthListener>();
    db_options_.listeners.push_back(health_);
    if (absl::Status s = OpenDb(); !s.ok()) return s;
    if (absl::Status loaded = LoadMarkers(); !loaded.ok()) return loaded;

    // The write buffer manager's budget: what every partition's memtables together can hold.
    disk_guard_ = engine::DiskGuard::For(
        path_, engine::DiskReserveFor(store.min_free_disk_bytes, engine::MemtableCapacity(db_.get(), {})));
    if (disk_guard_ != nullptr) {
      disk_watch_ = std::make_unique<util::Periodic>(absl::Milliseconds(100), [this] { disk_guard_->Measure(); });
    }
    if (options_.maintenance_interval > absl::ZeroDuration()) {
      maintenance_ = std::make_unique<util::Periodic>(options_.maintenance_interval, [this] { Maintain(); });
    }
    return absl::OkStatus();
  }

  std::vector<LocalCopy> LocalCopies() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<LocalCopy> out;
    for (const auto& [name, marker] : markers_) {
      if (active_.count(name) != 0) continue;
      LocalCopy copy;
      copy.layout = PartitionLayout{name, marker.families};
      copy.clean = marker.state == CopyState::kClean || marker.state == CopyState::kRestored;
      copy.claim = marker.claim;
      copy.changelog_offset = marker.changelog_offset;
      out.push_back(std::move(copy));
    }
    return out;
  }

  // A new partition must fit in the descriptor budget, so that the set can always open every file.
  absl::Status CheckFilesBudget() const { return engine::CheckFilesBudget(db_.get(), files_budget_); }

  absl::StatusOr<Partition*> Activate(const PartitionLayout& layout, const ActivateOptions& activate) {
    if (absl::Status s = CheckLayout(layout); !s.ok()) return s;
    // Checked before a local copy is dropped or a family created (the store's own check comes after).
    if (activate.token_limit != 0 && activate.token_limit <= activate.token_floor + 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ActivateOptions: token_limit ", activate.token_limit, " is not above token_floor ", activate.token_floor,
          " + 1: this owner could issue no token, and tokens would not grow across owners (a claim's ordinal "
          "shifted past 2^24 wraps: use TokenRangeOfClaim)"));
    }
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
    if (reopening_) return absl::UnavailableError("the partition set is reopening its DB; Activate again later");
    // New families take descriptors; a local copy's are counted already.
    if (!activate.use_local_copy) {
      if (absl::Status s = CheckFilesBudget(); !s.ok()) return s;
    }
    auto marker = markers_.find(layout.name);
    if (activate.use_local_copy) {
      if (marker == markers_.end()) {
        return absl::FailedPreconditionError(absl::StrCat("partition '", layout.name, "' has no local copy"));
      }
      if (marker->second.state != CopyState::kClean && marker->second.state != CopyState::kRestored) {
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
        PrepareFamilies(layout, activate.use_local_copy, CopyState::kActive);
    if (!families.ok()) return families.status();

    auto partition =
        std::make_shared<PartitionImpl>(layout, *families, activate.claim, engine::ClockOf(options_.store), &pin_);
    Options store = options_.store;
    store.column_family = (*families)[0]->GetName();
    store.create_if_missing = true;
    store.token_floor = activate.token_floor;
    store.token_limit = activate.token_limit;
    std::vector<uint32_t> allowed;
    for (size_t i = 1; i < families->size(); ++i) allowed.push_back((*families)[i]->GetID());
    store.effect_column_families = allowed;
    if (activate.commit_hook) {
      PartitionImpl* p = partition.get();
      auto hook = activate.commit_hook;
      store.commit_hook = [p, hook](const CommittedWrite& w) {
        // The allow-list keeps every write of a commit inside the partition's families.
        absl::StatusOr<std::vector<ChangelogOp>> ops =
            OpsOfBatch(*w.batch, [p](uint32_t cf) { return p->FamilyOf(cf); });
        if (!ops.ok()) return;
        hook(PartitionCommit{&*ops, w.sequence});
      };
    }
    // A partition's Store::Resume is the set's: a fatal error is recovered by reopening the one DB.
    absl::StatusOr<std::unique_ptr<Store>> attached =
        engine::StoreAccess::Attach(db_.get(), (*families)[0], store,
                                    engine::SharedStoreResources{health_, disk_guard_, [this] { return Resume(); }});
    if (!attached.ok()) return attached.status();
    partition->store_ = *std::move(attached);
    active_[layout.name] = partition;
    markers_[layout.name] = Marker{CopyState::kActive, {}, -1, layout.effect_families};
    ++stats_.activations;
    return partition.get();
  }

  absl::Status Deactivate(std::string_view name, KeepLocalCopy keep, int64_t changelog_offset) {
    std::shared_ptr<PartitionImpl> partition;
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
    std::lock_guard<std::mutex> lock(mu_);
    deactivating_.erase(std::string(name));
    retired_.push_back(partition);
    fenced_closed_ += last.fenced;
    ++stats_.deactivations;
    if (closed_) return absl::FailedPreconditionError("the partition set was closed during Deactivate");
    if (keep == KeepLocalCopy::kDrop) {
      absl::Status dropped = DropFamilies(std::string(name), partition->layout().effect_families);
      return closed.ok() ? dropped : closed;
    }
    // A write whose outcome was unknown may be in the local data without its changelog batch: such a
    // copy is kept, but not as clean.
    Marker marker;
    marker.state = closed.ok() && last.storage_errors == 0 ? CopyState::kClean : CopyState::kActive;
    marker.claim = partition->claim();
    marker.changelog_offset = changelog_offset;
    marker.families = partition->layout().effect_families;
    absl::Status written = WriteMarker(std::string(name), marker);
    markers_[std::string(name)] = marker;
    return closed.ok() ? written : closed;
  }

  absl::Status DropLocalCopy(std::string_view name) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string key(name);
    if (closed_) return absl::FailedPreconditionError("the partition set is closed");
    if (active_.count(key) != 0 || restoring_.count(key) != 0 || deactivating_.count(key) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("partition '", key, "' is active, being deactivated or being restored"));
    }
    auto marker = markers_.find(key);
    if (marker == markers_.end()) return absl::NotFoundError(absl::StrCat("no local copy of partition '", key, "'"));
    if (absl::Status s = DropFamilies(key, marker->second.families); !s.ok()) return s;
    ++stats_.local_copies_dropped;
    return absl::OkStatus();
  }

  // Begins a restore: under the set's lock, the partition's families (fresh, or its clean copy) marked
  // kRestoring, and the writer of the replay. The replay then runs without the lock (other partitions
  // go on); RestoreSessionImpl ends it.
  absl::StatusOr<std::unique_ptr<engine::RestoreSession>> BeginRestore(const PartitionLayout& layout,
                                                                       bool onto_local_copy);
  enum class RestoreEnd { kFinished, kDbLost, kAbandoned };
  // Ends a restore: the copy marked restored (kFinished), or its families dropped.
  absl::Status EndRestore(const PartitionLayout& layout, bool onto_local_copy,
                          std::unique_ptr<ChangelogRestore> restore, std::chrono::steady_clock::time_point started,
                          RestoreEnd end);

  Partition* Find(std::string_view name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = active_.find(std::string(name));
    return it == active_.end() ? nullptr : it->second.get();
  }

  std::vector<std::string> ActiveNames() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [name, p] : active_) out.push_back(name);
    return out;
  }

  absl::Status Resume() {
    std::lock_guard<std::mutex> serial(resume_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return absl::FailedPreconditionError("the partition set is closed");
      if (db_ != nullptr && health_->error().ok()) return absl::OkStatus();
      if (db_ != nullptr && db_->Resume().ok()) {
        health_->Set(absl::OkStatus());
        return absl::OkStatus();
      }
    }
    // RocksDB cannot resume from a fatal error (a failed WAL write) in place.
    return Reopen();
  }

  PartitionSetStats GetStats() const {
    std::vector<std::shared_ptr<PartitionImpl>> partitions = Active();
    std::lock_guard<std::mutex> lock(mu_);
    PartitionSetStats out = stats_;
    out.fenced = fenced_closed_;
    for (const auto& p : partitions) out.fenced += p->store().GetStats().fenced;
    out.active_partitions = active_.size();
    return out;
  }

  std::string ToPrometheus() const {
    util::Metrics metrics;
    for (const auto& p : Active()) {
      engine::AddStoreStats(p->store().GetStats(),
                            absl::StrCat("partition=\"", util::LabelValue(p->layout().name), "\""), metrics);
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
    metrics.Add("idem_partition_set_restore_seconds_total", "Time spent restoring partitions.", MetricType::kCounter,
                "", s.restore_seconds);
    counter("idem_partition_set_local_copies_dropped_total", "Local partition copies dropped.", s.local_copies_dropped);
    counter("idem_partition_set_reopens_total", "Recoveries that closed and reopened the DB.", s.reopens);
    counter("idem_partition_set_fenced_total", "Calls refused below a partition's ownership floor.", s.fenced);
    metrics.Add("idem_partition_set_active_partitions", "Partitions active now.", MetricType::kGauge, "",
                static_cast<uint64_t>(s.active_partitions));
    return metrics.Prometheus();
  }

  absl::Status Close() {
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
    std::vector<std::shared_ptr<PartitionImpl>> open = Active();
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
    std::lock_guard<std::mutex> serial(resume_mu_);
    std::lock_guard<std::mutex> lock(mu_);
    // Callers may still hold the partitions (a handler mid-run): their closed Stores answer
    // kFailedPrecondition until the set is destroyed.
    for (auto& [name, p] : active_) retired_.push_back(p);
    active_.clear();
    if (db_ != nullptr) {
      // Waits for a restore's write or a snapshot in progress; later ones are refused.
      std::unique_lock<std::shared_mutex> pinned(pin_.mu);
      pin_.db = nullptr;
      ++pin_.generation;
      for (auto& [name, h] : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      handles_.clear();
      for (rocksdb::ColumnFamilyHandle* h : dropped_handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      dropped_handles_.clear();
      const rocksdb::Status s = db_->Close();
      if (!s.ok() && first.ok()) first = util::FromRocks(s, "closing the partition set's DB");
      db_.reset();
    }
    claim_.reset();
    close_status_ = first;
    return first;
  }

  rocksdb::DB* db() const { return db_.get(); }

 private:
  // Opens the DB with every column family it has, each with the options it was first opened or created
  // with (the same expiry-filter factory every time: a store's time and counters live in it).
  absl::Status OpenDb() {
    std::vector<std::string> names;
    rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options_, path_, &names);
    if (!listed.ok()) names = {rocksdb::kDefaultColumnFamilyName};  // a new DB
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) descriptors.emplace_back(name, FamilyOptions(name));
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::Status s = rocksdb::DB::Open(db_options_, path_, descriptors, &handles, &raw);
    if (!s.ok()) return util::FromRocks(s, absl::StrCat("opening partition set '", path_, "'"));
    db_.reset(raw);
    claim_->Bind(db_.get(), std::string("\0partition set", 14));
    for (rocksdb::ColumnFamilyHandle* h : handles) handles_[h->GetName()] = h;
    std::unique_lock<std::shared_mutex> pinned(pin_.mu);
    pin_.db = db_.get();
    return absl::OkStatus();
  }

  void CloseDb() {
    if (db_ == nullptr) return;
    std::unique_lock<std::shared_mutex> pinned(pin_.mu);  // after the DB's borrowers are done
    pin_.db = nullptr;
    ++pin_.generation;
    for (auto& [name, h] : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    handles_.clear();
    for (rocksdb::ColumnFamilyHandle* h : dropped_handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    dropped_handles_.clear();
    db_->Close().PermitUncheckedError();  // it reports the error being recovered from
    db_.reset();
  }

  const rocksdb::ColumnFamilyOptions& FamilyOptions(const std::string& name) {
    auto it = cf_options_.find(name);
    if (it == cf_options_.end()) it = cf_options_.emplace(name, OptionsForFamily(name)).first;
    return it->second;
  }

  // REQUIRES: resume_mu_ held. Every active partition's calls end and are refused while the DB is
  // closed and opened again (which replays its WAL); then each store re-reads its metadata.
  absl::Status Reopen() {
    std::vector<std::shared_ptr<PartitionImpl>> partitions;
    {
      // No partition becomes active (or is restored into) while the DB goes away and comes back: a
      // store attached to the old DB would keep its destroyed handles.
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return absl::FailedPreconditionError("the partition set is closed");
      reopening_ = true;
      for (const auto& [name, p] : active_) partitions.push_back(p);
    }
    for (const auto& p : partitions) engine::StoreAccess::Suspend(p->store());
    std::lock_guard<std::mutex> lock(mu_);
    struct Done {
      bool* flag;
      ~Done() { *flag = false; }
    } done{&reopening_};
    if (closed_) return absl::FailedPreconditionError("the partition set is closed");
    CloseDb();
    if (absl::Status s = OpenDb(); !s.ok()) {
      const absl::Status down = absl::UnavailableError(absl::StrCat(
          "reopening the partition set after a storage error failed (", s.message(), "); Resume() again later"));
      health_->Set(down);
      return down;
    }
    absl::Status first;
    for (const auto& p : partitions) {
      // Deactivated meanwhile: its store is closed, nothing to move.
      auto it = active_.find(p->layout().name);
      if (it == active_.end() || it->second != p) continue;
      std::vector<rocksdb::ColumnFamilyHandle*> families;
      families.push_back(handles_[RecordsFamilyName(p->layout().name)]);
      for (size_t i = 0; i < p->layout().effect_families.size(); ++i) {
        families.push_back(handles_[EffectFamilyName(p->layout().name, i + 1, p->layout().effect_families[i])]);
      }
      p->SetFamilies(families);
      if (absl::Status s = engine::StoreAccess::Adopt(p->store(), db_.get(), families[0]); !s.ok() && first.ok()) {
        first = s;
      }
    }
    health_->Set(first);
    ++stats_.reopens;
    return first;
  }

  absl::Status PrepareDirectoryFor() {
    std::error_code ec;
    if (options_.store.env != nullptr) return absl::OkStatus();  // an Env of its own creates what it needs
    if (std::filesystem::exists(path_, ec)) return absl::OkStatus();
    if (!options_.create_if_missing) return absl::NotFoundError(absl::StrCat("no partition set at '", path_, "'"));
    std::filesystem::create_directories(path_, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("creating '", path_, "': ", ec.message()));
    return absl::OkStatus();
  }

  // A family gets idem's record options (its expiry filter, FIFO's drop by age) only if it IS a records
  // family: named exactly RecordsFamilyName(p) for a partition name p the set accepts. Partition names
  // hold no ':', so "p:<name>:0" has exactly two, and an effect family ("p:<name>:<i>:<family>", three
  // or more, whatever its own name holds, "0" and "x:0" included) can never take that shape.
  rocksdb::ColumnFamilyOptions OptionsForFamily(const std::string& name) const {
    if (PartitionOfRecordsFamily(name).has_value()) {
      return engine::OwnedColumnFamilyOptionsFor(options_.store, cache_);
    }
    rocksdb::ColumnFamilyOptions cf;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = cache_;
    cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    cf.write_buffer_size = options_.store.write_buffer_size;
    return cf;
  }

  absl::Status LoadMarkers() {
    rocksdb::ReadOptions read;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, db_->DefaultColumnFamily()));
    const rocksdb::Slice prefix(kPartitionMarkerPrefix.data(), kPartitionMarkerPrefix.size());
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      const std::string name = it->key().ToString().substr(kPartitionMarkerPrefix.size());
      absl::StatusOr<Marker> marker = DecodeMarker(std::string_view(it->value().data(), it->value().size()));
      if (!marker.ok()) return marker.status();
      // A copy restoring when the process stopped is as good as none; its families go now.
      if (marker->state == CopyState::kRestoring) {
        if (absl::Status s = DropFamilies(name, marker->families); !s.ok()) return s;
        ++stats_.local_copies_dropped;
        continue;
      }
      markers_[name] = *std::move(marker);
    }
    if (!it->status().ok()) return util::FromRocks(it->status(), "reading partition markers");
    return absl::OkStatus();
  }

  absl::Status WriteMarker(const std::string& name, const Marker& marker) {
    if (db_ == nullptr) return DownError();
    rocksdb::WriteOptions durable;
    durable.sync = true;
    return util::FromRocks(db_->Put(durable, db_->DefaultColumnFamily(), MarkerKey(name), EncodeMarker(marker)),
                           "writing a partition marker");
  }

  // REQUIRES: mu_ held (or Open). Creates the partition's families that do not exist yet.
  static absl::Status DownError() {
    return absl::UnavailableError("the partition set's DB is down after a storage error; Resume() again later");
  }

  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> EnsureFamilies(const PartitionLayout& layout) {
    if (db_ == nullptr) return DownError();
    std::vector<std::string> names = {RecordsFamilyName(layout.name)};
    for (size_t i = 0; i < layout.effect_families.size(); ++i) {
      names.push_back(EffectFamilyName(layout.name, i + 1, layout.effect_families[i]));
    }
    std::vector<rocksdb::ColumnFamilyHandle*> out;
    for (const std::string& name : names) {
      auto it = handles_.find(name);
      if (it == handles_.end()) {
        rocksdb::ColumnFamilyHandle* h = nullptr;
        const rocksdb::Status s = db_->CreateColumnFamily(FamilyOptions(name), name, &h);
        if (!s.ok()) return util::FromRocks(s, absl::StrCat("creating column family '", name, "'"));
        it = handles_.emplace(name, h).first;
      }
      out.push_back(it->second);
    }
    return out;
  }

  // REQUIRES: mu_ held. The partition's families for what comes next (`state`): its local copy kept
  // (`keep_copy`: the caller checked it) or dropped, the missing families created, its marker written
  // (markers_ is the caller's to update once the step succeeds).
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> PrepareFamilies(const PartitionLayout& layout,
                                                                            bool keep_copy, CopyState state) {
    auto marker = markers_.find(layout.name);
    if (!keep_copy && marker != markers_.end()) {
      if (absl::Status s = DropFamilies(layout.name, marker->second.families); !s.ok()) return s;
      ++stats_.local_copies_dropped;
    }
    absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> families = EnsureFamilies(layout);
    if (!families.ok()) return families.status();
    Marker next;
    next.state = state;
    next.families = layout.effect_families;
    if (absl::Status s = WriteMarker(layout.name, next); !s.ok()) return s;
    return families;
  }

  // REQUIRES: mu_ held (or Open). Drops a partition's families, its store metadata and its marker.
  absl::Status DropFamilies(const std::string& partition, const std::vector<std::string>& effect_families) {
    if (db_ == nullptr) return DownError();
    std::vector<std::string> names = {RecordsFamilyName(partition)};
    for (size_t i = 0; i < effect_families.size(); ++i) {
      names.push_back(EffectFamilyName(partition, i + 1, effect_families[i]));
    }
    for (const std::string& name : names) {
      auto it = handles_.find(name);
      if (it == handles_.end()) continue;
      if (rocksdb::Status s = db_->DropColumnFamily(it->second); !s.ok()) {
        return util::FromRocks(s, absl::StrCat("dropping column family '", name, "'"));
      }
      // The handle lives until the DB closes: a handler of the partition may still hold it.
      dropped_handles_.push_back(it->second);
      handles_.erase(it);
      cf_options_.erase(name);  // RocksDB keeps its own copy for the dropped family
    }
    // The store's metadata stays: its token mark keeps the next store of this name from issuing the
    // tokens this one issued (a token never repeats for an ID on one DB, store.h).
    rocksdb::WriteBatch batch;
    batch.Delete(db_->DefaultColumnFamily(), MarkerKey(partition));
    rocksdb::WriteOptions durable;
    durable.sync = true;
    if (rocksdb::Status s = db_->Write(durable, &batch); !s.ok()) {
      return util::FromRocks(s, "removing a dropped partition's metadata");
    }
    markers_.erase(partition);
    return absl::OkStatus();
  }

  std::vector<std::shared_ptr<PartitionImpl>> Active() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::shared_ptr<PartitionImpl>> out;
    for (const auto& [name, p] : active_) out.push_back(p);
    return out;
  }

  void Maintain() {
    for (const auto& p : Active()) {
      engine::StoreAccess::RunMaintenance(p->store()).IgnoreError();  // surfaces through Health()
    }
  }

  PartitionSetOptions options_;
  const std::string path_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::shared_ptr<engine::HealthListener> health_;
  std::shared_ptr<engine::DiskGuard> disk_guard_;
  std::unique_ptr<engine::StoreClaim> claim_;
  std::unique_ptr<rocksdb::Env> env_;  // the caller's (or the default) file system, directories shared
  std::unique_ptr<rocksdb::DB> db_;    // after env_: closed before it

  rocksdb::DBOptions db_options_;
  size_t files_budget_ = 0;
  std::map<std::string, rocksdb::ColumnFamilyOptions> cf_options_;  // as first opened or created
  std::mutex resume_mu_;                                            // one recovery at a time; taken before mu_
  mutable std::mutex mu_;
  bool closed_ = false;
  absl::Status close_status_;
  DbPin pin_;  // before the partitions, which point to it
  std::map<std::string, rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, Marker> markers_;  // local copies and active partitions
  std::map<std::string, std::shared_ptr<PartitionImpl>> active_;
  // Deactivated or closed partitions, kept until the set is destroyed: a caller may still hold one.
  std::vector<std::shared_ptr<PartitionImpl>> retired_;
  std::set<std::string> restoring_;
  // Being deactivated: out of active_, their stores closing. Close closes them too before the DB goes.
  std::map<std::string, std::shared_ptr<PartitionImpl>> deactivating_;
  // Handles of dropped families, destroyed with the DB (Close, a reopen): a handler may still hold one.
  std::vector<rocksdb::ColumnFamilyHandle*> dropped_handles_;
  bool reopening_ = false;
  uint64_t restore_counter_ = 0;
  uint64_t fenced_closed_ = 0;
  PartitionSetStats stats_;

  std::unique_ptr<util::Periodic> maintenance_;
  std::unique_ptr<util::Periodic> disk_watch_;
};

// ---------------------------------------------------------------------------------------------------

// A restore in progress (engine/partitions/restore_session.h). Its writes go through the pin: a Close
// or a reopening Resume meanwhile waits for the write in progress, then refuses the rest.
class RestoreSessionImpl : public engine::RestoreSession {
 public:
  RestoreSessionImpl(PartitionSet::Impl* set, PartitionLayout layout, bool onto_local_copy,
                     std::unique_ptr<ChangelogRestore> restore, DbPin* pin, uint64_t generation)
      : set_(set),
        layout_(std::move(layout)),
        onto_local_copy_(onto_local_copy),
        restore_(std::move(restore)),
        pinned_(restore_.get(), pin, generation) {}
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
  PinnedSink pinned_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool finished_ = false;
};

absl::StatusOr<std::unique_ptr<engine::RestoreSession>> PartitionSet::Impl::BeginRestore(const PartitionLayout& layout,
                                                                                         bool onto_local_copy) {
  if (absl::Status s = CheckLayout(layout); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return absl::FailedPreconditionError("the partition set is closed");
  if (active_.count(layout.name) != 0 || restoring_.count(layout.name) != 0 || deactivating_.count(layout.name) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("partition '", layout.name, "' is active, being deactivated or being restored"));
  }
  if (reopening_) return absl::UnavailableError("the partition set is reopening its DB; Restore again later");
  if (!onto_local_copy) {
    if (absl::Status s = CheckFilesBudget(); !s.ok()) return s;
  }
  auto marker = markers_.find(layout.name);
  if (onto_local_copy) {
    if (marker == markers_.end() ||
        (marker->second.state != CopyState::kClean && marker->second.state != CopyState::kRestored) ||
        marker->second.families != layout.effect_families) {
      return absl::FailedPreconditionError(
          absl::StrCat("partition '", layout.name, "' has no clean local copy with these families"));
    }
  }
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> families =
      PrepareFamilies(layout, onto_local_copy, CopyState::kRestoring);
  if (!families.ok()) return families.status();
  markers_[layout.name] = Marker{CopyState::kRestoring, {}, -1, layout.effect_families};
  ChangelogRestore::Target target;
  target.db = db_.get();
  target.families = *families;
  target.store_options = options_.store;
  target.store_options.column_family = (*families)[0]->GetName();
  target.scratch_dir = absl::StrCat(path_, "/restore-", ++restore_counter_);
  target.onto_local_copy = onto_local_copy;
  absl::StatusOr<std::unique_ptr<ChangelogRestore>> created = ChangelogRestore::Create(std::move(target));
  if (!created.ok()) return created.status();
  restoring_.insert(layout.name);
  uint64_t generation = 0;
  {
    std::shared_lock<std::shared_mutex> pinned(pin_.mu);
    generation = pin_.generation;
  }
  return std::make_unique<RestoreSessionImpl>(this, layout, onto_local_copy, *std::move(created), &pin_, generation);
}

absl::Status PartitionSet::Impl::EndRestore(const PartitionLayout& layout, bool onto_local_copy,
                                            std::unique_ptr<ChangelogRestore> restore,
                                            std::chrono::steady_clock::time_point started, RestoreEnd end) {
  std::lock_guard<std::mutex> lock(mu_);
  restoring_.erase(layout.name);
  if (closed_) {
    restore.reset();
    return absl::FailedPreconditionError("the partition set was closed during the restore");
  }
  if (end != RestoreEnd::kFinished) {
    DropFamilies(layout.name, layout.effect_families).IgnoreError();
    if (onto_local_copy) ++stats_.local_copies_dropped;
    if (end == RestoreEnd::kDbLost) {
      return absl::UnavailableError("the partition set closed or reopened its DB during the restore");
    }
    return absl::AbortedError("the restore was abandoned");
  }
  Marker restored;
  restored.state = CopyState::kRestored;
  restored.families = layout.effect_families;
  if (absl::Status s = WriteMarker(layout.name, restored); !s.ok()) return s;
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
absl::Status PartitionSet::Deactivate(std::string_view name, KeepLocalCopy keep, int64_t changelog_offset) {
  return impl_->Deactivate(name, keep, changelog_offset);
}
absl::Status PartitionSet::DropLocalCopy(std::string_view name) { return impl_->DropLocalCopy(name); }
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
Partition* PartitionSet::Find(std::string_view name) const { return impl_->Find(name); }
std::vector<std::string> PartitionSet::ActiveNames() const { return impl_->ActiveNames(); }
absl::Status PartitionSet::Resume() { return impl_->Resume(); }
PartitionSetStats PartitionSet::GetStats() const { return impl_->GetStats(); }
std::string PartitionSet::ToPrometheus() const { return impl_->ToPrometheus(); }
absl::Status PartitionSet::Close() { return impl_->Close(); }
rocksdb::DB* PartitionSet::db() const { return impl_->db(); }

}  // namespace idem
