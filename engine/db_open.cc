#include "engine/db_open.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/column_families.h"
#include "engine/record.h"
#include "engine/rocksdb_options.h"
#include "engine/status_util.h"
#include "engine/wal_scan.h"

namespace idem::engine {
namespace {

absl::Status OpenError(const rocksdb::Status& s, const std::string& path) {
  const std::string text = s.ToString();
  // Permanent conditions an operator must fix: retrying (kUnavailable) would never end.
  if (s.IsIOError() && text.find("Permission denied") != std::string::npos) {
    return absl::PermissionDeniedError(absl::StrCat("opening idem store at '", path, "': ", text));
  }
  if (s.IsIOError() && text.find("Read-only file system") != std::string::npos) {
    return absl::FailedPreconditionError(absl::StrCat("opening idem store at '", path, "': ", text));
  }
  if (s.IsIOError() && text.find("lock") != std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("idem store at '", path, "' is held by another process (", s.ToString(), ")"));
  }
  if (s.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(
        "opening idem store at '", path, "': ", s.ToString(),
        ". The WAL or another file is corrupt before its end: opening anyway would forget the acknowledged "
        "commits after the damage. `idemctl recover ",
        path, "` opens it anyway and lists what was dropped"));
  }
  return FromRocks(s, absl::StrCat("opening idem store at '", path, "'"));
}

}  // namespace

// Codes by what the caller should do next: a path that cannot be a directory is kInvalidArgument (fix
// the path), a permission problem is kPermissionDenied and a read-only file system kFailedPrecondition
// (an operator must act; retrying will not help), anything else kUnavailable (it may pass).
absl::Status PrepareDirectory(const std::string& path, bool create) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("store path '", path, "' exists and is not a directory"));
  }
  if (create && !std::filesystem::is_directory(path, ec)) {
    std::filesystem::create_directories(path, ec);
  }
  int error = ec ? ec.value() : 0;
  if (error == 0 && std::filesystem::is_directory(path, ec) && ::access(path.c_str(), R_OK | W_OK | X_OK) != 0) {
    error = errno;
  }
  if (error == 0) return absl::OkStatus();
  const std::string why = absl::StrCat("store directory '", path, "': ", std::strerror(error));
  switch (error) {
    case ENOTDIR:
    case EEXIST:
    case ENAMETOOLONG:
    case ELOOP: return absl::InvalidArgumentError(why);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(why);
    case EROFS: return absl::FailedPreconditionError(absl::StrCat(why, " (read-only file system)"));
    default: return absl::UnavailableError(why);
  }
}

namespace {

// Whether `path` is a directory holding files RocksDB would not have written (a creation that failed
// half-way leaves LOCK, LOG, IDENTITY...: those are fine to create a store over).
bool HoldsForeignFiles(const std::string& path) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    bool rocksdb_file = false;
    for (const char* prefix : {"LOCK", "LOG", "IDENTITY", "CURRENT", "OPTIONS-", "MANIFEST-"}) {
      rocksdb_file = rocksdb_file || absl::StartsWith(name, prefix);
    }
    for (const char* suffix : {".log", ".sst", ".dbtmp", ".blob"}) {
      rocksdb_file = rocksdb_file || absl::EndsWith(name, suffix);
    }
    if (!rocksdb_file) return true;
  }
  return false;
}

// Opening an existing store under another column-family name would start an empty store beside the real
// one, and every ID it remembers would look new. So when the named column family is missing from an
// existing DB, look for idem's metadata record in the others, and refuse if one of them is an idem store.
absl::Status RefuseOtherIdemLayout(const rocksdb::DBOptions& db_options, const std::string& path,
                                   const std::vector<std::string>& names, const std::string& wanted) {
  if (names.size() <= 1) return absl::OkStatus();  // only the default column family: a new store
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(db_options, path, descriptors, &handles, &raw);
  if (!s.ok()) return absl::OkStatus();  // the real open below reports what is wrong
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string found;
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    std::string value;
    if (!found.empty()) {
    } else if (handle->GetName() == rocksdb::kDefaultColumnFamilyName) {
      // Stores' metadata, keyed by their records column family.
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handle));
      const rocksdb::Slice prefix(kMetadataKeyPrefix.data(), kMetadataKeyPrefix.size());
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix) && found.empty(); it->Next()) {
        const std::string name = it->key().ToString().substr(prefix.size());
        if (std::find(names.begin(), names.end(), name) != names.end()) found = name;
      }
    } else if (db->Get(rocksdb::ReadOptions(), handle, rocksdb::Slice(), &value).ok() && DecodeMeta(value).ok()) {
      found = handle->GetName();  // a store from before the metadata moved to the default column family
    }
    db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  if (found.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the DB at '", path, "' holds an idem store in column family '", found, "', not '", wanted,
                   "': opening it as '", wanted,
                   "' would start an empty store and admit every remembered ID again; set "
                   "Options::column_family = \"",
                   found, "\""));
}

}  // namespace

absl::StatusOr<OpenedDb> OpenStoreDb(const Options& options, const std::string& path,
                                     std::shared_ptr<ExpiryFilterFactory> filter,
                                     std::shared_ptr<HealthListener> health, IfMissing if_missing,
                                     const std::vector<ColumnFamilySpec>& callers) {
  const bool create = if_missing == IfMissing::kCreate;
  rocksdb::DBOptions db_options = DBOptionsFor(options);
  db_options.create_if_missing = create;
  // The caller's families are the caller's to have: created when missing, even where the store is not.
  db_options.create_missing_column_families = create || !callers.empty();
  db_options.listeners.push_back(std::move(health));
  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  if (!listed.ok()) {
    if (!create) {
      if (!listed.IsPathNotFound()) return OpenError(listed, path);  // e.g. an I/O error: may pass
      return absl::NotFoundError(absl::StrCat("no idem store at '", path, "' (", listed.ToString(), ")"));
    }
    // Not a RocksDB (yet). Creating one inside a directory that already holds other files would mix the
    // store with them, and more likely means a wrong path: refuse.
    if (options.env == nullptr && HoldsForeignFiles(path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is not an idem store: the directory holds other files and no RocksDB (",
                       listed.ToString(), "); pass an empty or missing directory to create a store"));
    }
    names = {rocksdb::kDefaultColumnFamilyName};  // a new store
  }
  if (std::find(names.begin(), names.end(), options.column_family) == names.end()) {
    if (!create) {
      return absl::NotFoundError(
          absl::StrCat("'", path, "' holds no idem store in column family '", options.column_family, "'"));
    }
    if (absl::Status s = RefuseOtherIdemLayout(db_options, path, names, options.column_family); !s.ok()) return s;
    names.push_back(options.column_family);
  }
  rocksdb::ColumnFamilyOptions idem_cf = OwnedColumnFamilyOptionsFor(options);
  idem_cf.compaction_filter_factory = std::move(filter);  // one factory for the store's whole life
  const StoreColumnFamilies families = ColumnFamiliesFor(options, names, idem_cf, callers);
  if (options.env == nullptr && listed.ok()) {
    // RocksDB takes damage in the last block of a WAL for a torn tail and drops what follows quietly.
    if (absl::Status s = CheckWalTails(path); !s.ok()) {
      return absl::DataLossError(absl::StrCat("opening idem store at '", path, "': ", s.message(),
                                              ". `idemctl recover ", path,
                                              "` opens it anyway and lists what was dropped"));
    }
  }
  OpenedDb opened;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, families.descriptors, &opened.handles, &raw);
  if (!s.ok()) return OpenError(s, path);
  opened.db.reset(raw);
  opened.records = opened.handles[families.records_index];
  return opened;
}

}  // namespace idem::engine
