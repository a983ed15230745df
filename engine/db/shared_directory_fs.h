// A FileSystem that opens each directory once, however many times RocksDB asks: every column family
// created after DB::Open opens its own descriptor on the DB's directory (RocksDB 7.8.3's
// CreateColumnFamily), so a set of a thousand two-family partitions held two thousand descriptors on one
// directory. Here those are one descriptor, shared; its last user closes it.
#ifndef IDEM_ENGINE_DB_SHARED_DIRECTORY_FS_H_
#define IDEM_ENGINE_DB_SHARED_DIRECTORY_FS_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace idem::engine {

class SharedDirectoryFs : public rocksdb::FileSystemWrapper {
 public:
  explicit SharedDirectoryFs(const std::shared_ptr<rocksdb::FileSystem>& target) : FileSystemWrapper(target) {}
  const char* Name() const override { return "idem.SharedDirectoryFs"; }

  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& io,
                                 std::unique_ptr<rocksdb::FSDirectory>* result, rocksdb::IODebugContext* dbg) override;

 private:
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<rocksdb::FSDirectory>> open_;
};

// The caller's Env (its clock, threads and all) over a SharedDirectoryFs of its file system.
class SharedDirectoryEnv : public rocksdb::EnvWrapper {
 public:
  explicit SharedDirectoryEnv(rocksdb::Env* target) : EnvWrapper(target) {
    file_system_ = std::make_shared<SharedDirectoryFs>(target->GetFileSystem());
  }
  const char* Name() const override { return "idem.SharedDirectoryEnv"; }
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_SHARED_DIRECTORY_FS_H_
