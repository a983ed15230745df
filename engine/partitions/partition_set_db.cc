// The set's DB (engine/partitions/partition_set_impl.h) on its DbLifecycle: the opener (every family it
// has, each with the options it was made with; a reopen never creates), the reopen's hooks (stores
// suspended, then handed the new handles), families created and dropped with their markers.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/db/db_lifecycle.h"
#include "engine/db/rocksdb_options.h"
#include "engine/partitions/partition.h"
#include "engine/partitions/partition_markers.h"
#include "engine/partitions/partition_set_impl.h"
#include "engine/store/store_access.h"
#include "engine/store/store_registry.h"
#include "idem/partition_set.h"
#include "rocksdb/db.h"
#include "rocksdb/memtablerep.h"
#include "rocksdb/table.h"
#include "util/status_util.h"

namespace idem {

absl::Status PartitionSet::Impl::Resume() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return absl::FailedPreconditionError("the partition set is closed");
  }
  // DB::Resume in place, or (a fatal error RocksDB cannot resume from, such as a failed WAL write) a
  // close and reopen through the hooks below.
  return lifecycle_->Resume();
}

absl::StatusOr<engine::OpenedDb> PartitionSet::Impl::OpenDb(bool create) {
  rocksdb::DBOptions db_options = db_options_;
  db_options.create_if_missing = create;
  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path_, &names);
  if (!listed.ok()) {
    if (!create)
      return absl::NotFoundError(absl::StrCat("no partition set at '", path_, "' (", listed.ToString(), ")"));
    names = {rocksdb::kDefaultColumnFamilyName};  // a new DB
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) descriptors.emplace_back(name, FamilyOptions(name));
  rocksdb::DB* raw = nullptr;
  engine::OpenedDb opened;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path_, descriptors, &opened.handles, &raw);
  if (!s.ok()) return util::FromRocks(s, absl::StrCat("opening partition set '", path_, "'"));
  opened.db.reset(raw);
  for (rocksdb::ColumnFamilyHandle* h : opened.handles) {
    if (h->GetName() == rocksdb::kDefaultColumnFamilyName) opened.records = h;
  }
  claim_->Bind(raw, std::string("\0partition set", 14));
  return opened;
}

const rocksdb::ColumnFamilyOptions& PartitionSet::Impl::FamilyOptions(const std::string& name) {
  auto it = cf_options_.find(name);
  if (it == cf_options_.end()) it = cf_options_.emplace(name, OptionsForFamily(name)).first;
  return it->second;
}

void PartitionSet::Impl::SuspendStores() {
  std::vector<std::shared_ptr<engine::PartitionImpl>> partitions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, p] : active_) partitions.push_back(p);
    for (const auto& [name, p] : deactivating_) partitions.push_back(p);
  }
  // Without mu_: a store's call in progress may run a commit hook that asks the set something. A
  // partition deactivated meanwhile is in the list either way; one being closed is waited for.
  for (const auto& p : partitions) engine::StoreAccess::Suspend(p->store());
}

absl::Status PartitionSet::Impl::AdoptReopened(rocksdb::DB* db) {
  // An error here closes the reopened DB again (the lifecycle goes down): no store may be left on it,
  // so every family is checked before any store is handed the DB, and a store adopted before another
  // one failed is suspended again before returning.
  std::vector<std::shared_ptr<engine::PartitionImpl>> adopted;
  absl::Status failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Close closes the stores before it closes the DB: none is to be adopted (nor its claim touched).
    if (closed_) return absl::FailedPreconditionError("the partition set is closing");
    std::vector<std::pair<std::shared_ptr<engine::PartitionImpl>, std::vector<rocksdb::ColumnFamilyHandle*>>> moves;
    for (const auto& [name, p] : active_) {
      std::vector<rocksdb::ColumnFamilyHandle*> families;
      for (const std::string& family : engine::FamilyNames(p->layout())) {
        rocksdb::ColumnFamilyHandle* h = lifecycle_->handle(family);
        if (h == nullptr) {
          return absl::DataLossError(
              absl::StrCat("the reopened DB has no column family '", family, "' of active partition '", name, "'"));
        }
        families.push_back(h);
      }
      moves.emplace_back(p, std::move(families));
    }
    for (auto& [p, families] : moves) {
      p->SetFamilies(families);
      failed = engine::StoreAccess::Adopt(p->store(), db, families[0]);
      if (!failed.ok()) break;
      adopted.push_back(p);
    }
    if (failed.ok()) ++stats_.reopens;
  }
  // Without mu_, as SuspendStores: an adopted store's calls may already run.
  if (!failed.ok()) {
    for (const auto& p : adopted) engine::StoreAccess::Suspend(p->store());
  }
  return failed;
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

// A memtable's arena grows by blocks of write_buffer_size / 8 by default (1 MiB at the set's 8 MiB),
// so a partition holding a few records, or an effect family holding a few keys, took a whole block.
// Small blocks keep a partition's memtables near what they hold; the set's write buffer manager bounds
// them all together.
constexpr size_t kPartitionArenaBlock = 64 << 10;

rocksdb::ColumnFamilyOptions PartitionSet::Impl::OptionsForFamily(const std::string& name) const {
  if (engine::PartitionOfRecordsFamily(name).has_value()) {
    rocksdb::ColumnFamilyOptions records = engine::OwnedColumnFamilyOptionsFor(options_.store, cache_);
    if (engine::ResolvedMemtable(options_.store, /*owned=*/true) == MemtableKind::kHashSkipList) {
      // A memtable's bucket array is allocated whole when the memtable is made, one 8-byte bucket per
      // 64 bytes of write buffer for a single store (1 MiB at the set's 8 MiB): the largest part of an
      // idle partition's memory, paid by every partition of a set. A partition's memtable rarely fills
      // before the set's shared budget flushes it, so it gets one bucket per 512 bytes (a bucket then
      // holds ~8 records: three comparisons more per lookup).
      const size_t buckets = std::clamp<size_t>(options_.store.write_buffer_size / 512, 1 << 10, 1 << 17);
      records.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(buckets));
    }
    records.arena_block_size = kPartitionArenaBlock;
    return records;
  }
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache_;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.write_buffer_size = options_.store.write_buffer_size;
  cf.arena_block_size = kPartitionArenaBlock;
  return cf;
}

absl::Status PartitionSet::Impl::LoadMarkers() {
  rocksdb::ReadOptions read;
  rocksdb::DB* db = lifecycle_->db();
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, db->DefaultColumnFamily()));
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

absl::Status PartitionSet::Impl::DropUnmarkedFamilies() {
  std::set<std::string> marked;
  for (const auto& [name, marker] : markers_) {
    for (std::string& family : engine::FamilyNames(PartitionLayout{name, marker.families})) {
      marked.insert(std::move(family));
    }
  }
  std::vector<std::string> unmarked;
  for (std::string& family : lifecycle_->FamilyNames()) {
    // Only the set's own shapes: "p:<name>:0", "p:<name>:<digits>:<family>" for a name the set accepts.
    if (marked.count(family) == 0 && engine::IsPartitionFamily(family)) unmarked.push_back(std::move(family));
  }
  if (unmarked.empty()) return absl::OkStatus();
  if (absl::Status s = lifecycle_->DropFamilies(unmarked); !s.ok()) return s;
  for (const std::string& family : unmarked) cf_options_.erase(family);
  return absl::OkStatus();
}

absl::Status PartitionSet::Impl::PrepareFamilies(const std::vector<PartitionLayout>& layouts) {
  for (const PartitionLayout& layout : layouts) {
    if (absl::Status s = engine::CheckLayout(layout); !s.ok()) return s;
  }
  engine::DbLifecycle::Pin pin(*lifecycle_);
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return absl::FailedPreconditionError("the partition set is closed");
  if (!pin.ok()) return pin.status();
  auto busy = [&](const std::string& name) {
    return active_.count(name) != 0 || restoring_.count(name) != 0 || deactivating_.count(name) != 0;
  };
  // Copies that were active when the process stopped, and say nothing else (no claim, no offset): no
  // Activate or CatchUp can use them and a Restore drops them first, one rewrite of the OPTIONS file
  // each. After a crash that is every copy of the member, so they go here, together.
  std::vector<PartitionLayout> stale;
  for (const PartitionLayout& layout : layouts) {
    auto marker = markers_.find(layout.name);
    if (busy(layout.name) || marker == markers_.end()) continue;
    const engine::Marker& m = marker->second;
    if (m.state != engine::CopyState::kActive || m.claim.ordinal != 0 || m.changelog_offset >= 0) continue;
    const bool listed =
        std::any_of(stale.begin(), stale.end(), [&](const PartitionLayout& copy) { return copy.name == layout.name; });
    if (!listed) stale.push_back(PartitionLayout{layout.name, m.families});
  }
  if (!stale.empty()) {
    if (absl::Status s = DropCopies(stale); !s.ok()) return s;
    stats_.local_copies_dropped += stale.size();
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> missing;
  std::set<std::string> named;
  for (const PartitionLayout& layout : layouts) {
    if (busy(layout.name) || markers_.count(layout.name) != 0) continue;
    for (const std::string& family : engine::FamilyNames(layout)) {
      if (lifecycle_->handle(family) == nullptr && named.insert(family).second) {
        missing.emplace_back(family, FamilyOptions(family));
      }
    }
  }
  if (missing.empty()) return absl::OkStatus();
  return lifecycle_->CreateFamilies(missing).status();
}

absl::Status PartitionSet::Impl::WriteMarker(const std::string& name, const engine::Marker& marker) {
  rocksdb::DB* db = lifecycle_->db();
  rocksdb::WriteOptions durable;
  durable.sync = true;
  return util::FromRocks(
      db->Put(durable, db->DefaultColumnFamily(), engine::MarkerKey(name), engine::EncodeMarker(marker)),
      "writing a partition marker");
}

absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> PartitionSet::Impl::EnsureFamilies(
    const PartitionLayout& layout) {
  const std::vector<std::string> names = engine::FamilyNames(layout);
  std::vector<rocksdb::ColumnFamilyDescriptor> missing;
  for (const std::string& name : names) {
    if (lifecycle_->handle(name) == nullptr) missing.emplace_back(name, FamilyOptions(name));
  }
  // In one call: RocksDB rewrites its OPTIONS file (every family of the set) once per call.
  if (!missing.empty()) {
    if (absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> created = lifecycle_->CreateFamilies(missing);
        !created.ok()) {
      return created.status();
    }
  }
  std::vector<rocksdb::ColumnFamilyHandle*> out;
  for (const std::string& name : names) out.push_back(lifecycle_->handle(name));
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
  return DropCopies({PartitionLayout{partition, effect_families}});
}

absl::Status PartitionSet::Impl::DropCopies(const std::vector<PartitionLayout>& copies) {
  std::vector<std::string> names;
  for (const PartitionLayout& copy : copies) {
    for (std::string& name : engine::FamilyNames(copy)) names.push_back(std::move(name));
  }
  // One RocksDB call for all of them: one OPTIONS rewrite.
  if (absl::Status s = lifecycle_->DropFamilies(names); !s.ok()) return s;
  for (const std::string& name : names) cf_options_.erase(name);  // RocksDB keeps its own copy for a dropped family
  // The store's metadata stays: its token mark keeps the next store of this name from issuing the
  // tokens this one issued (a token never repeats for an ID on one DB, store.h).
  rocksdb::DB* db = lifecycle_->db();
  rocksdb::WriteBatch batch;
  for (const PartitionLayout& copy : copies) batch.Delete(db->DefaultColumnFamily(), engine::MarkerKey(copy.name));
  rocksdb::WriteOptions durable;
  durable.sync = true;
  if (rocksdb::Status s = db->Write(durable, &batch); !s.ok()) {
    return util::FromRocks(s, "removing a dropped partition's metadata");
  }
  for (const PartitionLayout& copy : copies) markers_.erase(copy.name);
  return absl::OkStatus();
}

}  // namespace idem
