#include "engine/db/wal_error_fs.h"

#include <pthread.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>

#include "rocksdb/file_system.h"

namespace idem::engine {
namespace {

bool IsLogOrManifest(const std::string& name) {
  const size_t slash = name.find_last_of('/');
  const std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
  return (base.size() > 4 && base.compare(base.size() - 4, 4, ".log") == 0) || base.rfind("MANIFEST-", 0) == 0;
}

// The info LOG. RocksDB's own logger (from PosixFileSystem::NewLogger) asserts on the line after a
// failed write, and RocksDB logs precisely when errors happen, so a full disk fails one line and
// aborts on the next. This logger writes with stdio and drops what cannot be written (a lost
// diagnostic line). It reports its size, so that RocksDB's log rolling (max_log_file_size) works.
class BestEffortLogger : public rocksdb::Logger {
 public:
  explicit BestEffortLogger(std::FILE* file) : file_(file) {
    std::fseek(file_, 0, SEEK_END);
    const long at = std::ftell(file_);
    size_ = at > 0 ? static_cast<size_t>(at) : 0;
  }
  ~BestEffortLogger() override { CloseImpl().PermitUncheckedError(); }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[4096];
    timeval now;
    gettimeofday(&now, nullptr);
    struct tm t;
    localtime_r(&now.tv_sec, &t);
    int n = std::snprintf(line, sizeof line, "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %llx ", t.tm_year + 1900,
                          t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<long>(now.tv_usec),
                          static_cast<unsigned long long>(pthread_self()));
    if (n < 0) return;
    va_list copy;
    va_copy(copy, ap);
    const int m = std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, format, copy);
    va_end(copy);
    if (m < 0) return;
    size_t len = std::min(sizeof line - 2, static_cast<size_t>(n) + static_cast<size_t>(m));
    if (len == 0 || line[len - 1] != '\n') line[len++] = '\n';
    std::lock_guard<std::mutex> lock(mu_);
    if (file_ == nullptr) return;
    const size_t written = std::fwrite(line, 1, len, file_);
    std::fflush(file_);  // errors dropped: see above
    size_ += written;
  }
  size_t GetLogFileSize() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return size_;
  }
  void Flush() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (file_ != nullptr) std::fflush(file_);
  }

 protected:
  rocksdb::Status CloseImpl() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (file_ != nullptr) std::fclose(file_);
    file_ = nullptr;
    return rocksdb::Status::OK();
  }

 private:
  mutable std::mutex mu_;
  std::FILE* file_;
  size_t size_ = 0;
};

rocksdb::IOStatus NotRetryable(rocksdb::IOStatus s) {
  if (!s.ok()) s.SetRetryable(false);
  return s;
}

class NotRetryableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  explicit NotRetryableFile(std::unique_ptr<rocksdb::FSWritableFile>&& file)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(file)) {}
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->Append(data, o, dbg));
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->Append(data, o, info, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->PositionedAppend(data, offset, o, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& o,
                                     const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->PositionedAppend(data, offset, o, info, dbg));
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->Truncate(size, o, dbg));
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->Close(o, dbg));
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->Flush(o, dbg));
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->Sync(o, dbg));
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->Fsync(o, dbg));
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override {
    return NotRetryable(target()->RangeSync(offset, nbytes, o, dbg));
  }
};

class NotRetryableWalFs : public rocksdb::FileSystemWrapper {
 public:
  NotRetryableWalFs() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "idem.NotRetryableWalFs"; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    return Wrap(fname, target()->NewWritableFile(fname, options, result, dbg), result);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    return Wrap(fname, target()->ReopenWritableFile(fname, options, result, dbg), result);
  }
  rocksdb::IOStatus NewLogger(const std::string& fname, const rocksdb::IOOptions& /*options*/,
                              std::shared_ptr<rocksdb::Logger>* result, rocksdb::IODebugContext* /*dbg*/) override {
    std::FILE* file = std::fopen(fname.c_str(), "ae");
    if (file == nullptr) return rocksdb::IOStatus::IOError("cannot open info log " + fname, std::strerror(errno));
    *result = std::make_shared<BestEffortLogger>(file);
    return rocksdb::IOStatus::OK();
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
    return Wrap(fname, target()->ReuseWritableFile(fname, old_fname, options, result, dbg), result);
  }

 private:
  static rocksdb::IOStatus Wrap(const std::string& fname, rocksdb::IOStatus s,
                                std::unique_ptr<rocksdb::FSWritableFile>* result) {
    if (s.ok() && IsLogOrManifest(fname)) *result = std::make_unique<NotRetryableFile>(std::move(*result));
    return NotRetryable(std::move(s));
  }
};

}  // namespace

rocksdb::Env* DefaultEnvWithoutRetryableWalErrors() {
  // Never destroyed: DBs may close during static destruction, and Env::Default() is not destroyed either.
  static rocksdb::Env* const env = rocksdb::NewCompositeEnv(std::make_shared<NotRetryableWalFs>()).release();
  return env;
}

}  // namespace idem::engine
