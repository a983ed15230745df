// A RocksDB FileSystem that fails writes on demand: WAL and SST appends/syncs return an I/O error or
// "no space" while a fault is armed. Built on the public FileSystemWrapper (ROCKSDB.md §6). Faults are
// never marked retryable: on Debian's assert-enabled RocksDB a retryable WAL error aborts the process.
#ifndef IDEM_TESTS_FAULT_FS_H_
#define IDEM_TESTS_FAULT_FS_H_

#include <atomic>
#include <memory>
#include <string>

#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace idem::testing {

enum class Fault { kNone, kIoError, kNoSpace };

class FaultFs : public rocksdb::FileSystemWrapper {
 public:
  FaultFs() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "idem.FaultFs"; }

  void Arm(Fault fault) { fault_.store(fault); }
  void Clear() { fault_.store(Fault::kNone); }
  uint64_t injected() const { return injected_.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(fname, options, result, dbg);
    if (s.ok() && Watched(fname)) *result = std::make_unique<File>(std::move(*result), this);
    return s;
  }

  // RocksDB recycles WAL files through ReuseWritableFile when configured to; wrap those too.
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->ReuseWritableFile(fname, old_fname, options, result, dbg);
    if (s.ok() && Watched(fname)) *result = std::make_unique<File>(std::move(*result), this);
    return s;
  }

  // The status an armed fault produces, or OK.
  rocksdb::IOStatus Check() {
    switch (fault_.load()) {
      case Fault::kNone:
        return rocksdb::IOStatus::OK();
      case Fault::kIoError:
        injected_++;
        return rocksdb::IOStatus::IOError("injected I/O error");
      case Fault::kNoSpace:
        injected_++;
        return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    }
    return rocksdb::IOStatus::OK();
  }

 private:
  static bool Watched(const std::string& fname) {
    auto ends = [&](const char* suffix) {
      const std::string s(suffix);
      return fname.size() >= s.size() && fname.compare(fname.size() - s.size(), s.size(), s) == 0;
    };
    return ends(".log") || ends(".sst");
  }

  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& file, FaultFs* fs)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = fs_->Check();
      return s.ok() ? target()->Append(data, options, dbg) : s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = fs_->Check();
      return s.ok() ? target()->Append(data, options, info, dbg) : s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = fs_->Check();
      return s.ok() ? target()->Sync(options, dbg) : s;
    }

   private:
    FaultFs* fs_;
  };

  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<uint64_t> injected_{0};
};

// An Env whose file system is `fs`, for Options::env.
inline std::unique_ptr<rocksdb::Env> EnvOver(const std::shared_ptr<FaultFs>& fs) {
  return rocksdb::NewCompositeEnv(fs);
}

}  // namespace idem::testing

#endif  // IDEM_TESTS_FAULT_FS_H_
