#include "engine/db/shared_directory_fs.h"

#include <utility>

namespace idem::engine {
namespace {

// One user's handle on a shared directory: fsyncs go through; Close leaves the descriptor to the
// others (it closes when the last handle goes).
class SharedDirectory : public rocksdb::FSDirectory {
 public:
  explicit SharedDirectory(std::shared_ptr<rocksdb::FSDirectory> dir) : dir_(std::move(dir)) {}
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& io, rocksdb::IODebugContext* dbg) override {
    return dir_->Fsync(io, dbg);
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& io, rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& options) override {
    return dir_->FsyncWithDirOptions(io, dbg, options);
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();
  }
  size_t GetUniqueId(char* id, size_t max_size) const override { return dir_->GetUniqueId(id, max_size); }

 private:
  std::shared_ptr<rocksdb::FSDirectory> dir_;
};

}  // namespace

rocksdb::IOStatus SharedDirectoryFs::NewDirectory(const std::string& name, const rocksdb::IOOptions& io,
                                                  std::unique_ptr<rocksdb::FSDirectory>* result,
                                                  rocksdb::IODebugContext* dbg) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<rocksdb::FSDirectory> dir = open_[name].lock();
  if (dir == nullptr) {
    std::unique_ptr<rocksdb::FSDirectory> opened;
    rocksdb::IOStatus s = target()->NewDirectory(name, io, &opened, dbg);
    if (!s.ok()) return s;
    dir = std::shared_ptr<rocksdb::FSDirectory>(std::move(opened));
    open_[name] = dir;
  }
  *result = std::make_unique<SharedDirectory>(std::move(dir));
  return rocksdb::IOStatus::OK();
}

}  // namespace idem::engine
