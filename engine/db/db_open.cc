#include "engine/db/db_open.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/db/column_families.h"
#include "engine/db/rocksdb_options.h"
#include "engine/db/wal_scan.h"
#include "engine/records/record.h"
#include "engine/records/store_metadata.h"
#include "util/status_util.h"

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
  return util::FromRocks(s, absl::StrCat("opening idem store at '", path, "'"));
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

// Every idem store's records family named in the default column family's metadata keys, but `except`.
std::vector<std::string> StoresNamedInMetadata(rocksdb::DB* db, const std::string& except) {
  std::vector<std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), db->DefaultColumnFamily()));
  const rocksdb::Slice prefix(kMetadataKeyPrefix.data(), kMetadataKeyPrefix.size());
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string name = it->key().ToString().substr(prefix.size());
    if (name != except) out.push_back(std::move(name));
  }
  return out;
}

// Whether `family` of a DB opened read-only was made by an idem release from before the metadata moved
// to the default column family: it holds that release's token mark under the empty key, or (a FIFO
// store may have dropped the file holding the mark) nothing but values that decode as idem records.
bool IsLegacyStore(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family) {
  std::string value;
  if (db->Get(rocksdb::ReadOptions(), family, rocksdb::Slice(), &value).ok()) return DecodeMeta(value).ok();
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), family));
  bool any = false;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!DecodeRecord(std::string_view(it->value().data(), it->value().size())).ok()) return false;
    any = true;
  }
  return any && it->status().ok();
}

// A store opens only what its metadata says is its own. An existing column family named like the store
// is adopted only if the default column family holds its store metadata, or it is a store of an earlier
// release (IsLegacyStore); anything else is somebody else's family (e.g. one of the caller's families
// of a store kept under another name): opening it would run idem's expiry filter over its data and
// answer every ID the real store remembers as new. Checked read-only, before the real open runs that
// filter (a flush at recovery already would).
absl::Status RefuseFamilyThatIsNotTheStore(const rocksdb::DBOptions& db_options, const std::string& path,
                                           const std::string& wanted) {
  std::vector<std::string> others;
  {
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(
        db_options, path, {{rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()}}, &handles, &raw);
    if (!s.ok()) return OpenError(s, path);
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    s = db->Get(rocksdb::ReadOptions(), handles[0], MetadataKey(wanted), &value);
    if (s.ok() || !s.IsNotFound()) {  // the store itself (or an error LoadMetadata will meet again)
      db->DestroyColumnFamilyHandle(handles[0]).PermitUncheckedError();
      return absl::OkStatus();
    }
    others = StoresNamedInMetadata(db.get(), wanted);
    db->DestroyColumnFamilyHandle(handles[0]).PermitUncheckedError();
  }
  if (others.empty()) {
    // Only a store of an earlier release keeps no metadata; a DB holding a store of this release's
    // has it, so its other families are never taken for a legacy store.
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    // A family with its own comparator does not open with the plain one: not a store either.
    if (rocksdb::DB::OpenForReadOnly(db_options, path,
                                     {{rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
                                      {wanted, rocksdb::ColumnFamilyOptions()}},
                                     &handles, &raw)
            .ok()) {
      std::unique_ptr<rocksdb::DB> db(raw);
      const bool legacy = IsLegacyStore(db.get(), handles[1]);
      for (rocksdb::ColumnFamilyHandle* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      if (legacy) return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "column family '", wanted, "' of the DB at '", path,
        "' is not an idem store (no idem store metadata for it): idem never adopts an existing column family. "
        "Name the store's own family in Options::column_family, or pick a name the DB does not hold"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the DB at '", path, "' holds an idem store in column family '", others[0], "'",
      others.size() > 1 ? absl::StrCat(" (and ", others.size() - 1, " more)") : std::string(), "; its column family '",
      wanted,
      "' is not a store (no idem store metadata for it: a family of the caller's?), and opening it as one would "
      "admit every remembered ID again; set Options::column_family = \"",
      others[0], "\""));
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
  const bool exists = std::find(names.begin(), names.end(), options.column_family) != names.end();
  if (!exists) {
    if (!create) {
      return absl::NotFoundError(
          absl::StrCat("'", path, "' holds no idem store in column family '", options.column_family, "'"));
    }
    if (absl::Status s = RefuseOtherIdemLayout(db_options, path, names, options.column_family); !s.ok()) return s;
  }
  rocksdb::ColumnFamilyOptions idem_cf = OwnedColumnFamilyOptionsFor(options);
  idem_cf.compaction_filter_factory = std::move(filter);  // one factory for the store's whole life
  StoreColumnFamilies families = ColumnFamiliesFor(options, names, idem_cf, callers);
  if (options.env == nullptr && listed.ok()) {
    // RocksDB takes damage in the last block of a WAL for a torn tail and drops what follows quietly.
    if (absl::Status s = CheckWalTails(path); !s.ok()) {
      return absl::DataLossError(absl::StrCat("opening idem store at '", path, "': ", s.message(),
                                              ". `idemctl recover ", path,
                                              "` opens it anyway and lists what was dropped"));
    }
  }
  if (exists) {
    if (absl::Status s = RefuseFamilyThatIsNotTheStore(db_options, path, options.column_family); !s.ok()) return s;
  } else {
    // The records family is created after the store's metadata (below), so that a family of that name
    // without metadata is never one of ours, even after a crash between the two.
    families.descriptors.erase(families.descriptors.begin() + static_cast<ptrdiff_t>(families.records_index));
  }
  OpenedDb opened;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, families.descriptors, &opened.handles, &raw);
  if (!s.ok()) return OpenError(s, path);
  opened.db.reset(raw);
  if (exists) {
    opened.records = opened.handles[families.records_index];
    return opened;
  }
  auto fail = [&opened](absl::Status status) {
    for (rocksdb::ColumnFamilyHandle* h : opened.handles)
      opened.db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    opened.db->Close().PermitUncheckedError();  // the error being reported is the one that counts
    return status;
  };
  const MetadataLocation where{opened.db->DefaultColumnFamily(), MetadataKey(options.column_family)};
  std::string value;
  s = opened.db->Get(rocksdb::ReadOptions(), where.cf, where.key, &value);
  if (s.IsNotFound()) {
    // A creation that stopped here left metadata without a family: the next Open keeps it (above).
    if (absl::Status saved = SaveMetadata(opened.db.get(), where, NewStoreMetadata()); !saved.ok()) {
      return fail(saved);
    }
  } else if (!s.ok()) {
    return fail(util::FromRocks(s, "reading idem store metadata"));
  }
  rocksdb::ColumnFamilyHandle* records = nullptr;
  s = opened.db->CreateColumnFamily(idem_cf, options.column_family, &records);
  if (!s.ok()) return fail(OpenError(s, path));
  opened.handles.push_back(records);
  opened.records = records;
  return opened;
}

}  // namespace idem::engine
