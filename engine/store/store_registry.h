// Which stores are open in this process, by what they are rather than how their path is spelled.
//
// RocksDB's LOCK file keeps other processes out, but within one process it compares paths as spelled:
// "dir/db", "dir/db/" and a symlink to it are three paths to one store, and two DB instances on it would
// both hand out the same token for the same ID and both acknowledge commits, one of which is lost. So a
// Store claims its directory by identity (device and inode; for a store on a custom Env, the Env and the
// normalized path) and its records column family, and a second claim is refused:
//   - Open refuses a directory that any Store in this process uses (whether from Open or Attach);
//   - Attach refuses a column family another Store uses, and a DB on a directory that another DB
//     instance in this process has open.
// Claims end at Store::Close.
//
// Thread safety: every function may be called from any thread.
#ifndef IDEM_ENGINE_STORE_STORE_REGISTRY_H_
#define IDEM_ENGINE_STORE_STORE_REGISTRY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "rocksdb/env.h"

namespace idem::engine {

class StoreClaim {
 public:
  // Open: the whole directory. kFailedPrecondition if any Store of this process uses it.
  static absl::StatusOr<std::unique_ptr<StoreClaim>> ForOpen(const std::string& path, rocksdb::Env* env);
  // Attach: one column family of the caller's DB `db` (identified by its pointer).
  static absl::StatusOr<std::unique_ptr<StoreClaim>> ForAttach(const std::string& db_path, rocksdb::Env* env,
                                                               const void* db, const std::string& column_family);
  // Open, once its DB is open: records which DB instance holds the directory and which column family.
  void Bind(const void* db, const std::string& column_family);
  ~StoreClaim();
  StoreClaim(const StoreClaim&) = delete;
  StoreClaim& operator=(const StoreClaim&) = delete;

 private:
  explicit StoreClaim(size_t id) : id_(id) {}
  const size_t id_;
};

// The identity of the directory at `path`: "dev:inode" on the real file system (env null or the default
// Env), else the Env's address and the normalized absolute path. kNotFound when it does not exist.
absl::StatusOr<std::string> DirectoryIdentity(const std::string& path, rocksdb::Env* env);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_STORE_REGISTRY_H_
