// The set's DB (engine/partitions/partition_set_impl.h): opened with every family it has, each with the
// options it was made with; families created and dropped with their markers; resumed, or closed and
// reopened after a fatal error while every partition's calls wait.
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
#include "engine/partitions/partition_set_impl.h"
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

absl::Status PartitionSet::Impl::Resume() {
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

absl::Status PartitionSet::Impl::OpenDb() {
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

rocksdb::Status PartitionSet::Impl::CloseDb() {
  if (db_ == nullptr) return rocksdb::Status::OK();
  std::unique_lock<std::shared_mutex> pinned(pin_.mu);  // after the DB's borrowers are done
  pin_.db = nullptr;
  ++pin_.generation;
  for (auto& [name, h] : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  handles_.clear();
  for (rocksdb::ColumnFamilyHandle* h : dropped_handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  dropped_handles_.clear();
  const rocksdb::Status s = db_->Close();
  db_.reset();
  return s;
}

const rocksdb::ColumnFamilyOptions& PartitionSet::Impl::FamilyOptions(const std::string& name) {
  auto it = cf_options_.find(name);
  if (it == cf_options_.end()) it = cf_options_.emplace(name, OptionsForFamily(name)).first;
  return it->second;
}

absl::Status PartitionSet::Impl::Reopen() {
  std::vector<std::shared_ptr<engine::PartitionImpl>> partitions;
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
  CloseDb().PermitUncheckedError();  // it reports the error being recovered from
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
    families.push_back(handles_[engine::RecordsFamilyName(p->layout().name)]);
    for (size_t i = 0; i < p->layout().effect_families.size(); ++i) {
      families.push_back(handles_[engine::EffectFamilyName(p->layout().name, i + 1, p->layout().effect_families[i])]);
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

absl::Status PartitionSet::Impl::PrepareDirectoryFor() {
  std::error_code ec;
  if (options_.store.env != nullptr) return absl::OkStatus();  // an Env of its own creates what it needs
  if (std::filesystem::exists(path_, ec)) return absl::OkStatus();
  if (!options_.create_if_missing) return absl::NotFoundError(absl::StrCat("no partition set at '", path_, "'"));
  std::filesystem::create_directories(path_, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("creating '", path_, "': ", ec.message()));
  return absl::OkStatus();
}

rocksdb::ColumnFamilyOptions PartitionSet::Impl::OptionsForFamily(const std::string& name) const {
  if (engine::PartitionOfRecordsFamily(name).has_value()) {
    return engine::OwnedColumnFamilyOptionsFor(options_.store, cache_);
  }
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache_;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.write_buffer_size = options_.store.write_buffer_size;
  return cf;
}

absl::Status PartitionSet::Impl::LoadMarkers() {
  rocksdb::ReadOptions read;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, db_->DefaultColumnFamily()));
  const rocksdb::Slice prefix(engine::kPartitionMarkerPrefix.data(), engine::kPartitionMarkerPrefix.size());
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string name = it->key().ToString().substr(engine::kPartitionMarkerPrefix.size());
    absl::StatusOr<engine::Marker> marker =
        engine::DecodeMarker(std::string_view(it->value().data(), it->value().size()));
    if (!marker.ok()) return marker.status();
    // A copy restoring when the process stopped is as good as none; its families go now.
    if (marker->state == engine::CopyState::kRestoring) {
      if (absl::Status s = DropFamilies(name, marker->families); !s.ok()) return s;
      ++stats_.local_copies_dropped;
      continue;
    }
    markers_[name] = *std::move(marker);
  }
  if (!it->status().ok()) return util::FromRocks(it->status(), "reading partition markers");
  return absl::OkStatus();
}

absl::Status PartitionSet::Impl::WriteMarker(const std::string& name, const engine::Marker& marker) {
  if (db_ == nullptr) return DownError();
  rocksdb::WriteOptions durable;
  durable.sync = true;
  return util::FromRocks(
      db_->Put(durable, db_->DefaultColumnFamily(), engine::MarkerKey(name), engine::EncodeMarker(marker)),
      "writing a partition marker");
}

absl::Status PartitionSet::Impl::DownError() {
  return absl::UnavailableError("the partition set's DB is down after a storage error; Resume() again later");
}

absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> PartitionSet::Impl::EnsureFamilies(
    const PartitionLayout& layout) {
  if (db_ == nullptr) return DownError();
  std::vector<std::string> names = {engine::RecordsFamilyName(layout.name)};
  for (size_t i = 0; i < layout.effect_families.size(); ++i) {
    names.push_back(engine::EffectFamilyName(layout.name, i + 1, layout.effect_families[i]));
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

absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> PartitionSet::Impl::PrepareFamilies(
    const PartitionLayout& layout, bool keep_copy, engine::CopyState state) {
  auto marker = markers_.find(layout.name);
  if (!keep_copy && marker != markers_.end()) {
    if (absl::Status s = DropFamilies(layout.name, marker->second.families); !s.ok()) return s;
    ++stats_.local_copies_dropped;
  }
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> families = EnsureFamilies(layout);
  if (!families.ok()) return families.status();
  engine::Marker next;
  next.state = state;
  next.families = layout.effect_families;
  if (absl::Status s = WriteMarker(layout.name, next); !s.ok()) return s;
  return families;
}

absl::Status PartitionSet::Impl::DropFamilies(const std::string& partition,
                                              const std::vector<std::string>& effect_families) {
  if (db_ == nullptr) return DownError();
  std::vector<std::string> names = {engine::RecordsFamilyName(partition)};
  for (size_t i = 0; i < effect_families.size(); ++i) {
    names.push_back(engine::EffectFamilyName(partition, i + 1, effect_families[i]));
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
  batch.Delete(db_->DefaultColumnFamily(), engine::MarkerKey(partition));
  rocksdb::WriteOptions durable;
  durable.sync = true;
  if (rocksdb::Status s = db_->Write(durable, &batch); !s.ok()) {
    return util::FromRocks(s, "removing a dropped partition's metadata");
  }
  markers_.erase(partition);
  return absl::OkStatus();
}

}  // namespace idem
