#include "engine/store/store_registry.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/db/wal_error_fs.h"

namespace idem::engine {
namespace {

struct Entry {
  size_t id;
  std::string directory;      // DirectoryIdentity
  std::string column_family;  // empty until an Open binds it
  const void* db;             // the DB instance, null until an Open binds it
  bool whole_directory;       // an Open: the store owns the DB
};

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::vector<Entry>& Entries() {
  static std::vector<Entry> entries;
  return entries;
}
size_t next_id = 1;  // guarded by RegistryMutex()

}  // namespace

absl::StatusOr<std::string> DirectoryIdentity(const std::string& path, rocksdb::Env* env) {
  if (env == nullptr || env == rocksdb::Env::Default() || env == DefaultEnvWithoutRetryableWalErrors()) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot stat '", path, "': ", std::strerror(errno)));
    }
    return absl::StrCat("dev ", st.st_dev, " inode ", st.st_ino);
  }
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec).lexically_normal();
  std::string normal = p.string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  return absl::StrCat("env ", reinterpret_cast<uintptr_t>(env), " path ", normal);
}

absl::StatusOr<std::unique_ptr<StoreClaim>> StoreClaim::ForOpen(const std::string& path, rocksdb::Env* env) {
  absl::StatusOr<std::string> directory = DirectoryIdentity(path, env);
  if (!directory.ok()) return directory.status();
  std::lock_guard<std::mutex> lock(RegistryMutex());
  for (const Entry& e : Entries()) {
    if (e.directory == *directory) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the idem store at '", path, "' is already open in this process (",
          e.whole_directory ? "by Store::Open" : absl::StrCat("attached in column family '", e.column_family, "'"),
          ", perhaps under another spelling of its path); two instances would hand out the same tokens. "
          "Close it first, or share the one Store"));
    }
  }
  const size_t id = next_id++;
  Entries().push_back(Entry{id, *directory, {}, nullptr, true});
  return std::unique_ptr<StoreClaim>(new StoreClaim(id));
}

absl::StatusOr<std::unique_ptr<StoreClaim>> StoreClaim::ForAttach(const std::string& db_path, rocksdb::Env* env,
                                                                  const void* db, const std::string& column_family) {
  absl::StatusOr<std::string> found = DirectoryIdentity(db_path, env);
  // A DB on an Env without real directories: its address identifies it well enough.
  const std::string directory = found.ok() ? *found : absl::StrCat("db ", reinterpret_cast<uintptr_t>(db));
  std::lock_guard<std::mutex> lock(RegistryMutex());
  for (const Entry& e : Entries()) {
    if (e.directory != directory) continue;
    if (e.db != nullptr && e.db != db) {
      return absl::FailedPreconditionError(absl::StrCat("another DB instance in this process has '", db_path,
                                                        "' open; two instances of one DB would lose "
                                                        "writes. Attach to that DB instead"));
    }
    if (e.column_family == column_family) {
      return absl::FailedPreconditionError(
          absl::StrCat("column family '", column_family,
                       "' already has an idem Store attached (or opened) in this process; "
                       "two Stores on one column family would hand out the same tokens. Share the one Store"));
    }
  }
  const size_t id = next_id++;
  Entries().push_back(Entry{id, directory, column_family, db, false});
  return std::unique_ptr<StoreClaim>(new StoreClaim(id));
}

void StoreClaim::Bind(const void* db, const std::string& column_family) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  for (Entry& e : Entries()) {
    if (e.id == id_) {
      e.db = db;
      e.column_family = column_family;
    }
  }
}

StoreClaim::~StoreClaim() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  std::vector<Entry>& entries = Entries();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].id == id_) {
      entries.erase(entries.begin() + static_cast<long>(i));
      return;
    }
  }
}

}  // namespace idem::engine
