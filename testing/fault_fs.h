// A RocksDB FileSystem that fails file operations on demand: appends, syncs, reads and opens of WAL and
// SST files return an I/O error or "no space" while a fault is armed — every time, or at random points
// (one call in N, from a seed). Built on the public FileSystemWrapper (docs/ROCKSDB.md §6). Faults are
// never marked retryable: on Debian's assert-enabled RocksDB a retryable WAL error aborts the process.
#ifndef IDEM_TESTING_FAULT_FS_H_
#define IDEM_TESTING_FAULT_FS_H_

#include <atomic>
#include <memory>
#include <string>

#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace idem::testing {

enum class Fault { kNone, kIoError, kNoSpace };

// Which operations an armed fault hits (a bit mask).
enum FaultOps : unsigned { kAppend = 1, kSync = 2, kRead = 4, kOpen = 8, kWrites = kAppend | kSync };

class FaultFs : public rocksdb::FileSystemWrapper {
 public:
  FaultFs() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "idem.FaultFs"; }

  void Arm(Fault fault, unsigned ops = kWrites) {
    one_in_.store(1);
    ops_.store(ops);
    fault_.store(fault);
  }
  // Fails about one call in `one_in` of the chosen operations, deterministically from `seed`.
  void ArmRandomly(Fault fault, unsigned ops, uint64_t one_in, uint64_t seed) {
    random_.store(seed);
    one_in_.store(one_in);
    ops_.store(ops);
    fault_.store(fault);
  }
  void Clear() { fault_.store(Fault::kNone); }
  uint64_t injected() const { return injected_.load(); }

  rocksdb::IOStatus NewRandomAccessFile(const std::string& fname, const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                        rocksdb::IODebugContext* dbg) override {
    if (Watched(fname)) {
      if (rocksdb::IOStatus s = Check(kOpen); !s.ok()) return s;
    }
    rocksdb::IOStatus s = target()->NewRandomAccessFile(fname, options, result, dbg);
    if (s.ok() && Watched(fname)) *result = std::make_unique<ReadFile>(std::move(*result), this);
    return s;
  }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (Watched(fname)) {
      if (rocksdb::IOStatus s = Check(kOpen); !s.ok()) return s;
    }
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

  // The status an armed fault produces for an operation of kind `op`, or OK.
  rocksdb::IOStatus Check(unsigned op) {
    const Fault fault = fault_.load();
    if (fault == Fault::kNone || (ops_.load() & op) == 0) return rocksdb::IOStatus::OK();
    const uint64_t one_in = one_in_.load();
    if (one_in > 1) {
      // splitmix64 steps: deterministic for a seed and a call order.
      uint64_t x = random_.fetch_add(0x9e3779b97f4a7c15ULL) + 0x9e3779b97f4a7c15ULL;
      x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
      x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
      if ((x ^ (x >> 31)) % one_in != 0) return rocksdb::IOStatus::OK();
    }
    switch (fault) {
      case Fault::kNone: return rocksdb::IOStatus::OK();
      case Fault::kIoError: injected_++; return rocksdb::IOStatus::IOError("injected I/O error");
      case Fault::kNoSpace: injected_++; return rocksdb::IOStatus::NoSpace("injected: no space left on device");
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
      rocksdb::IOStatus s = fs_->Check(kAppend);
      return s.ok() ? target()->Append(data, options, dbg) : s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = fs_->Check(kAppend);
      return s.ok() ? target()->Append(data, options, info, dbg) : s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = fs_->Check(kSync);
      return s.ok() ? target()->Sync(options, dbg) : s;
    }

   private:
    FaultFs* fs_;
  };

  class ReadFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
   public:
    ReadFile(std::unique_ptr<rocksdb::FSRandomAccessFile>&& file, FaultFs* fs)
        : rocksdb::FSRandomAccessFileOwnerWrapper(std::move(file)), fs_(fs) {}
    rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& options, rocksdb::Slice* result,
                           char* scratch, rocksdb::IODebugContext* dbg) const override {
      rocksdb::IOStatus s = fs_->Check(kRead);
      return s.ok() ? target()->Read(offset, n, options, result, scratch, dbg) : s;
    }
    rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* reqs, size_t num_reqs, const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = fs_->Check(kRead);
      if (s.ok()) return target()->MultiRead(reqs, num_reqs, options, dbg);
      for (size_t i = 0; i < num_reqs; ++i) reqs[i].status = s;
      return s;
    }

   private:
    FaultFs* fs_;
  };

  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<unsigned> ops_{kWrites};
  std::atomic<uint64_t> one_in_{1};
  std::atomic<uint64_t> random_{0};
  std::atomic<uint64_t> injected_{0};
};

// An Env whose file system is `fs`, for Options::env.
inline std::unique_ptr<rocksdb::Env> EnvOver(const std::shared_ptr<FaultFs>& fs) {
  return rocksdb::NewCompositeEnv(fs);
}

}  // namespace idem::testing

#endif  // IDEM_TESTING_FAULT_FS_H_
