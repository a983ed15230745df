// Store::Impl's life: construction, metadata, background threads, Close/Resume/Health, statistics, and
// the public Store's factories and forwarding. The reserve/commit state machine is in store.cc.
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/db/db_open.h"
#include "engine/db/rocksdb_options.h"
#include "engine/store/store_access.h"
#include "engine/store/store_impl.h"
#include "util/status_util.h"

namespace idem {

// ---------------------------------------------------------------------------------------------------
// Construction and lifecycle

Store::Impl::Impl(const Options& options, std::shared_ptr<engine::ExpiryFilterFactory> filter)
    : options_(options),
      clock_(engine::ClockOf(options)),
      filter_(std::move(filter)),
      time_(filter_->time()),
      recent_(options.recent_commits_cache_entries),
      expiry_(options.compaction, time_,
              [this](const rocksdb::Status& s, std::string_view context) { return StorageError(s, context); }) {
  write_options_.sync = options.sync;
  no_io_reads_.read_tier = rocksdb::kBlockCacheTier;
  holds_ = engine::NewHoldTable(options.durable_reservations, options.lease,
                                [this](const engine::IdKey& key, uint64_t token) { return CommitLanded(key, token); });
}

Store::Impl::~Impl() { Close().IgnoreError(); }

absl::Status Store::Impl::LoadMetadata(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records,
                                       engine::IfMissing if_missing) {
  engine::MetadataLocation where{db->DefaultColumnFamily(), engine::MetadataKey(records->GetName())};
  absl::StatusOr<engine::StoreMetadata> metadata = engine::LoadMetadata(db, where, records, if_missing);
  if (!metadata.ok()) return metadata.status();
  if (!identity_.empty() && metadata->identity != identity_) {
    return absl::DataLossError("the DB reopened is not this store (another store's identity)");
  }
  if (!identity_.empty() && metadata->layout != layout_) {
    return absl::DataLossError("the DB reopened keeps its keys in another layout than this store");
  }
  if (identity_.empty()) layout_ = metadata->layout;  // written once, at Start: RecordKey() reads it unpinned
  identity_ = metadata->identity;
  metadata_ = where;
  tokens_ = std::make_unique<engine::TokenSource>(db, std::move(where), *std::move(metadata), options_.token_floor,
                                                  options_.token_limit);
  // Fixed by the first load: a reopen's tokens continue above this process's own, which stay ours.
  if (token_floor_ == 0) token_floor_ = tokens_->first();
  return absl::OkStatus();
}

absl::Status Store::Impl::Start(std::unique_ptr<engine::DbLifecycle> lifecycle,
                                std::unique_ptr<engine::StoreClaim> claim, const std::string& directory,
                                engine::IfMissing if_missing) {
  lifecycle_ = std::move(lifecycle);
  claim_ = std::move(claim);
  if (!shared_disk_guard_ && options_.min_free_disk_bytes != 0) {
    // Every family's memtables, the caller's own included: a flush of theirs meets a full disk as ours would.
    const uint64_t memtables =
        options_.min_free_disk_bytes > 0 ? 0 : engine::MemtableCapacity(db(), {cf(), db()->DefaultColumnFamily()});
    disk_guard_ = engine::DiskGuard::For(directory, engine::DiskReserveFor(options_.min_free_disk_bytes, memtables));
  }
  time_->SetClock(clock_);
  Now();  // the store's time starts at its clock's reading now
  if (options_.effect_column_families) {
    for (uint32_t id : *options_.effect_column_families) {
      if (id == cf()->GetID()) {
        return absl::InvalidArgumentError(absl::StrCat("effect_column_families lists column family #", id,
                                                       ", the store's own records: effects may never write them"));
      }
    }
  }
  if (absl::Status s = LoadMetadata(db(), cf(), if_missing); !s.ok()) return s;
  engine::DbLifecycle::Hooks hooks;
  hooks.on_reopen = [this](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records) {
    // A reopen must find this very store: a deleted directory is refused by the opener (it never
    // creates), a replaced one by its identity.
    absl::Status s = LoadMetadata(db, records, engine::IfMissing::kRefuse);
    if (s.ok()) counters_.reopens.fetch_add(1, std::memory_order_relaxed);
    return s;
  };
  hooks.before_close = [this](rocksdb::DB* db) {
    // Whatever the periodic sync had not reached yet is made durable at a clean close. Not after a
    // write error: syncing a WAL writer that failed trips RocksDB's previous-error assertion.
    if (!wal_sync_ || options_.sync || !lifecycle_->Health().ok()) return absl::OkStatus();
    return util::FromRocks(db->SyncWAL(), "syncing the WAL");
  };
  lifecycle_->SetHooks(std::move(hooks));
  if (disk_guard_ != nullptr && !shared_disk_guard_) {
    disk_watch_ = std::make_unique<util::Periodic>(absl::Milliseconds(100), [this] { disk_guard_->Measure(); });
  }
  if (options_.maintenance_interval > absl::ZeroDuration()) {
    maintenance_ = std::make_unique<util::Periodic>(options_.maintenance_interval, [this] {
      RunMaintenance().IgnoreError();  // failures surface through Health() and the next foreground call
    });
  }
  if (!options_.sync && options_.wal_sync_interval > absl::ZeroDuration()) {
    wal_sync_ = std::make_unique<util::Periodic>(options_.wal_sync_interval, [this] {
      Operation op(*lifecycle_);
      if (!op.ok() || !lifecycle_->Health().ok()) return;  // see BeforeClose: never sync a failed WAL
      if (rocksdb::Status s = db()->SyncWAL(); !s.ok()) StorageError(s, "periodic WAL sync").IgnoreError();
    });
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::Close() {
  if (lifecycle_ == nullptr) return absl::OkStatus();  // Start never ran
  lifecycle_->BeginClose();                            // calls are turned away from here on
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (maintenance_) maintenance_->Stop();
  if (wal_sync_) wal_sync_->Stop();
  if (disk_watch_) disk_watch_->Stop();
  absl::Status closed = lifecycle_->Close();
  claim_.reset();  // only once the DB is closed may another Store open the directory
  return closed;
}

// ---------------------------------------------------------------------------------------------------
// Stats and health

Stats Store::Impl::GetStats() const {
  Stats stats;
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  stats.reserved = get(counters_.reserved);
  stats.duplicate = get(counters_.duplicate);
  stats.in_flight = get(counters_.in_flight);
  stats.takeovers = get(counters_.takeovers);
  stats.conflicts = get(counters_.conflicts);
  stats.waits = get(counters_.waits);
  stats.reopens = get(counters_.reopens);
  stats.committed = get(counters_.committed);
  stats.released = get(counters_.released);
  stats.extended = get(counters_.extended);
  stats.lease_lost = get(counters_.lease_lost);
  stats.fenced = get(counters_.fenced);
  stats.fast_path_hits = get(counters_.fast_path_hits);
  stats.corrupt_records = get(counters_.corrupt_records);
  stats.storage_errors = get(counters_.storage_errors);
  if (disk_guard_ != nullptr) {
    stats.disk_refusals = disk_guard_->refusals();
    stats.disk_free_bytes = disk_guard_->free_bytes();
  }
  stats.expired_removed = filter_->removed();
  stats.reserve_latency = reserve_latency_.Summary();
  stats.commit_latency = commit_latency_.Summary();
  return stats;
}

absl::Status Store::Impl::Health() const {
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  if (absl::Status s = lifecycle_->Health(); !s.ok()) return s;
  return disk_guard_ != nullptr ? disk_guard_->Health() : absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------
// Store: Open, Attach and forwarding

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kReserved: return "reserved";
    case Verdict::kDuplicate: return "duplicate";
    case Verdict::kInFlight: return "in_flight";
    case Verdict::kConflict: return "conflict";
  }
  return "?";
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

absl::Status Store::Impl::Resume() {
  if (absl::Status s = lifecycle_->Resume(); !s.ok()) return s;
  return disk_guard_ != nullptr ? disk_guard_->Health() : absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options, const std::string& path) {
  return Open(options, path, {});
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options, const std::string& path,
                                                   const std::vector<ColumnFamilySpec>& families) {
  if (absl::Status s = engine::ValidateOptions(options); !s.ok()) return s;
  for (size_t i = 0; i < families.size(); ++i) {
    const std::string& name = families[i].name;
    if (name.empty() || name == rocksdb::kDefaultColumnFamilyName || name == options.column_family) {
      return absl::InvalidArgumentError(
          absl::StrCat("column family '", name, "' cannot be one of the caller's: ",
                       name.empty() ? "the name is empty" : "it is the default or the store's own column family"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (families[j].name == name) {
        return absl::InvalidArgumentError(absl::StrCat("column family '", name, "' is given twice"));
      }
    }
  }
  if (path.empty()) return absl::InvalidArgumentError("store path must not be empty");
  if (options.env == nullptr) {
    if (absl::Status s = engine::PrepareDirectory(path, options.create_if_missing); !s.ok()) return s;
  }
  const engine::IfMissing if_missing =
      options.create_if_missing ? engine::IfMissing::kCreate : engine::IfMissing::kRefuse;
  absl::StatusOr<std::unique_ptr<engine::StoreClaim>> claim = engine::StoreClaim::ForOpen(path, options.env);
  if (!claim.ok()) return claim.status();
  auto health = std::make_shared<engine::HealthListener>();
  auto filter = std::make_shared<engine::ExpiryFilterFactory>(engine::ClockOf(options), engine::ShapeOf(options));
  absl::StatusOr<engine::OpenedDb> opened = engine::OpenStoreDb(options, path, filter, health, if_missing, families);
  if (!opened.ok()) return opened.status();
  (*claim)->Bind(opened->db.get(), options.column_family);
  // A reopen after a fatal error must find the same store: it never creates one.
  engine::DbLifecycle::Opener reopen = [options, path, filter, health, families] {
    return engine::OpenStoreDb(options, path, filter, health, engine::IfMissing::kRefuse, families);
  };
  auto impl = std::make_unique<Impl>(options, filter);
  absl::Status started =
      impl->Start(std::make_unique<engine::DbLifecycle>(*std::move(opened), std::move(reopen), std::move(health)),
                  *std::move(claim), path, if_missing);
  if (!started.ok()) return started;
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Store>> Store::Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                     const Options& options) {
  return engine::StoreAccess::Attach(db, cf, options, engine::SharedStoreResources{});
}

namespace engine {

absl::StatusOr<std::unique_ptr<Store>> StoreAccess::Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                           const Options& options, SharedStoreResources shared) {
  if (db == nullptr || cf == nullptr) return absl::InvalidArgumentError("Attach needs a DB and a column family");
  if (absl::Status s = engine::ValidateOptions(options); !s.ok()) return s;
  const rocksdb::ColumnFamilyOptions current = db->GetOptions(cf);
  auto filter = std::dynamic_pointer_cast<engine::ExpiryFilterFactory>(current.compaction_filter_factory);
  if (filter == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "column family '", cf->GetName(),
        "' was opened without idem's options (no idem expiry filter): pass ColumnFamilyOptionsFor(options) "
        "for it on every DB::Open, or expired IDs would never be removed"));
  }
  if (absl::Status s = engine::CheckColumnFamilyFor(current, filter->shape(), options, cf->GetName()); !s.ok()) {
    return s;
  }
  if (absl::Status s = engine::CheckMetadataColumnFamily(db, db->DefaultColumnFamily()); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<engine::StoreClaim>> claim =
      engine::StoreClaim::ForAttach(db->GetName(), db->GetEnv(), db, cf->GetName());
  if (!claim.ok()) return claim.status();
  Options attached = options;
  attached.column_family = cf->GetName();
  const engine::IfMissing if_missing =
      options.create_if_missing ? engine::IfMissing::kCreate : engine::IfMissing::kRefuse;
  auto impl = std::make_unique<Store::Impl>(attached, std::move(filter));
  if (shared.disk_guard != nullptr) impl->ShareDiskGuard(std::move(shared.disk_guard));
  absl::Status started =
      impl->Start(std::make_unique<engine::DbLifecycle>(db, cf, std::move(shared.health), std::move(shared.resume)),
                  *std::move(claim), db->GetName(), if_missing);
  if (!started.ok()) return started;
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

absl::Status StoreAccess::RunMaintenance(Store& store) { return store.impl_->RunMaintenance(); }

void StoreAccess::WithCommitOrder(Store& store, const std::function<void()>& fn) { store.impl_->WithCommitOrder(fn); }

void StoreAccess::Suspend(Store& store) { store.impl_->lifecycle()->Suspend(); }

absl::Status StoreAccess::Adopt(Store& store, rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records) {
  store.impl_->RebindClaim(db, records->GetName());
  return store.impl_->lifecycle()->Adopt(db, records);
}

}  // namespace engine

absl::StatusOr<Reservation> Store::Reserve(std::string_view id) { return impl_->Reserve(id, ReserveOptions()); }
absl::StatusOr<Reservation> Store::Reserve(std::string_view id, const ReserveOptions& options) {
  return impl_->Reserve(id, options);
}
absl::Status Store::Commit(std::string_view id, uint64_t token, std::string_view result, rocksdb::WriteBatch* effects) {
  return impl_->Commit(id, token, result, effects);
}
absl::Status Store::ValidateCommit(std::string_view result, const rocksdb::WriteBatch* effects) const {
  return impl_->ValidateCommit(result, effects);
}
absl::Status Store::Release(std::string_view id, uint64_t token) { return impl_->Release(id, token); }
absl::Status Store::Extend(std::string_view id, uint64_t token) { return impl_->Extend(id, token); }
std::vector<absl::StatusOr<Reservation>> Store::ReserveBatch(absl::Span<const std::string_view> ids) {
  return impl_->ReserveBatch(ids, {});
}
std::vector<absl::StatusOr<Reservation>> Store::ReserveBatch(absl::Span<const std::string_view> ids,
                                                             absl::Span<const std::optional<uint64_t>> fingerprints) {
  return impl_->ReserveBatch(ids, fingerprints);
}
std::vector<absl::Status> Store::CommitBatch(absl::Span<const CommitRequest> requests) {
  return impl_->CommitBatch(requests, -1);
}
std::vector<absl::Status> Store::CommitBatch(absl::Span<const CommitRequest> requests, int64_t tag) {
  return impl_->CommitBatch(requests, tag);
}
absl::StatusOr<std::vector<InDoubtReservation>> Store::InDoubt(size_t limit) const { return impl_->InDoubt(limit); }
absl::StatusOr<RecordInfo> Store::Peek(std::string_view id) const { return impl_->Peek(id); }
absl::Status Store::Forget(std::string_view id) { return impl_->Forget(id); }
absl::Status Store::CompactExpired() { return impl_->CompactExpired(); }
Stats Store::GetStats() const { return impl_->GetStats(); }
uint64_t Store::TokenFloor() const { return impl_->token_floor(); }
std::string Store::RecordKey(std::string_view id) const { return impl_->RecordKeyOf(id); }
absl::Status Store::Health() const { return impl_->Health(); }
absl::Status Store::Resume() { return impl_->Resume(); }
absl::Status Store::Close() { return impl_->Close(); }
rocksdb::DB* Store::db() const { return impl_->db(); }
rocksdb::ColumnFamilyHandle* Store::column_family() const { return impl_->cf(); }

rocksdb::ColumnFamilyHandle* Store::family(std::string_view name) const { return impl_->family(name); }

}  // namespace idem
