#include "tools/store_families.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/records/store_metadata.h"
#include "rocksdb/convenience.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/options_util.h"

namespace idem::tools {

absl::StatusOr<std::vector<ColumnFamilySpec>> CallerFamilies(const std::string& path, const std::string& store_family) {
  rocksdb::ConfigOptions config;
  config.ignore_unknown_options = true;  // options of a newer RocksDB are not ours to judge
  rocksdb::DBOptions db_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> persisted;
  rocksdb::Status s = rocksdb::LoadLatestOptions(config, path, &db_options, &persisted);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("reading the options of the DB's column families: ", s.ToString()));
  }
  std::vector<ColumnFamilySpec> out;
  for (rocksdb::ColumnFamilyDescriptor& d : persisted) {
    if (d.name == rocksdb::kDefaultColumnFamilyName || d.name == store_family) continue;
    auto options = std::make_shared<rocksdb::ColumnFamilyOptions>(std::move(d.options));
    options->disable_auto_compactions = true;
    out.push_back(ColumnFamilySpec{d.name, std::move(options)});
  }
  return out;
}

std::string ComparatorProblem(const std::string& path, const std::vector<ColumnFamilySpec>& callers) {
  for (const ColumnFamilySpec& spec : callers) {
    // Read-only, one family at a time: RocksDB then names the comparator this family was made with.
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    const rocksdb::Status s = rocksdb::DB::OpenForReadOnly(
        rocksdb::DBOptions(), path, {{rocksdb::kDefaultColumnFamilyName, {}}, {spec.name, *spec.options}}, &handles,
        &raw);
    if (s.ok()) {
      std::unique_ptr<rocksdb::DB> db(raw);
      for (rocksdb::ColumnFamilyHandle* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      continue;
    }
    if (s.ToString().find("comparator") == std::string::npos) continue;
    return absl::StrCat(
        "column family '", spec.name, "' (the caller's) was made with a comparator idemctl cannot construct (",
        s.ToString(),
        "). RocksDB opens a DB for writing only with every column family and its own comparator, and opening it "
        "with another order would corrupt it, so this command cannot run here: call Store::Forget or "
        "Store::CompactExpired (or RocksDB's Checkpoint) from the program that owns the store, which has the "
        "comparator. stats, get, scan and verify open only the store's own families and work");
  }
  return {};
}

std::string PartitionSetRefusal(const std::string& path, const std::string& command) {
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  bool partition_set = false;
  // Read-only and the default family only: it works on a DB held by a running set, and on one whose
  // WAL `recover` is about to repair (point-in-time replay).
  if (rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), path, {{rocksdb::kDefaultColumnFamilyName, {}}}, &handles,
                                   &raw)
          .ok()) {
    std::unique_ptr<rocksdb::DB> db(raw);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[0]));
    const rocksdb::Slice prefix(engine::kPartitionMarkerPrefix.data(), engine::kPartitionMarkerPrefix.size());
    it->Seek(prefix);
    partition_set = it->Valid() && it->key().starts_with(prefix);
    it.reset();
    db->DestroyColumnFamilyHandle(handles[0]).PermitUncheckedError();
  } else {
    // Unreadable as a DB: tell a partition set by its records families' names ("p:<name>:0").
    std::vector<std::string> names;
    if (rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok()) {
      for (const std::string& n : names) {
        partition_set = partition_set || (n.size() > 4 && n.rfind("p:", 0) == 0 &&
                                          n.compare(n.size() - 2, 2, ":0") == 0 && n.find(':', 2) == n.size() - 2);
      }
    }
  }
  if (!partition_set) return {};
  return absl::StrCat(
      "'", path,
      "' is a partition set (idem::PartitionSet): its partitions' records are replicated through "
      "each partition's changelog, and `",
      command,
      "` here would change the local copy without the changelog "
      "seeing it (the next restore or catch-up would disagree with the owner's state, while the copy stays "
      "marked clean). Instead: forget through the partition's owner (Store::Forget on the active partition's "
      "store: its commit hook carries the delete to the changelog), or drop the local copy "
      "(PartitionSet::DropLocalCopy) and let the partition restore from its changelog. Read-only commands "
      "(stats, get, scan, verify with --column-family=p:<partition>:0) work");
}

}  // namespace idem::tools
