// Power-loss simulation. PowerLossFs passes every write through to the real file (so the process reads
// what it wrote, as with a page cache) and journals, to a side file, what each file held at its last
// Sync/Fsync: the page cache's unsynced tail is what a power failure loses. The journal is written with
// plain write(2) so that it survives the SIGKILL that ends the process; ApplyPowerLoss then cuts every
// file back to its last synced length, as a machine losing power at the moment of the kill would find it.
//
// Modelled: unsynced appends are lost (optionally only a random part of a WAL's unsynced tail, the torn
// write a real disk can leave). Not modelled: loss of directory entries of files created or renamed since
// the last directory fsync (RocksDB fsyncs the directory for the files it depends on), reordering of
// synced writes (none on a correct FS).
#ifndef IDEM_TESTING_POWER_LOSS_FS_H_
#define IDEM_TESTING_POWER_LOSS_FS_H_

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace idem::testing {

class PowerLossFs : public rocksdb::FileSystemWrapper {
 public:
  explicit PowerLossFs(const std::string& journal_path)
      : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()),
        journal_(open(journal_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}
  ~PowerLossFs() override {
    if (journal_ >= 0) close(journal_);
  }
  const char* Name() const override { return "idem.PowerLossFs"; }
  bool ok() const { return journal_ >= 0; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(fname, options, result, dbg);
    if (s.ok()) {
      Journal("C " + fname + "\n");
      *result = std::make_unique<File>(std::move(*result), this, fname, 0);
    }
    return s;
  }

  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    uint64_t size = 0;
    target()->GetFileSize(fname, rocksdb::IOOptions(), &size, dbg).PermitUncheckedError();
    rocksdb::IOStatus s = target()->ReopenWritableFile(fname, options, result, dbg);
    if (s.ok()) {
      Journal("S " + fname + " " + std::to_string(size) + "\n");  // what it held before is on disk
      *result = std::make_unique<File>(std::move(*result), this, fname, size);
    }
    return s;
  }

  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->RenameFile(src, dst, options, dbg);
    if (s.ok()) Journal("M " + src + " " + dst + "\n");
    return s;
  }

  rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->DeleteFile(fname, options, dbg);
    if (s.ok()) Journal("D " + fname + "\n");
    return s;
  }

  void Journal(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    if (journal_ >= 0 && write(journal_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      close(journal_);
      journal_ = -1;  // ok() turns false; the test fails rather than trusting a partial journal
    }
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& file, PowerLossFs* fs, std::string name, uint64_t size)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), name_(std::move(name)), size_(size) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = target()->Append(data, options, dbg);
      if (s.ok()) size_ += data.size();
      return s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = target()->Append(data, options, info, dbg);
      if (s.ok()) size_ += data.size();
      return s;
    }
    rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = target()->Truncate(size, options, dbg);
      if (s.ok()) size_ = size;
      return s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = target()->Sync(options, dbg);
      if (s.ok()) Synced();
      return s;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = target()->Fsync(options, dbg);
      if (s.ok()) Synced();
      return s;
    }

   private:
    void Synced() { fs_->Journal("S " + name_ + " " + std::to_string(size_) + "\n"); }

    PowerLossFs* fs_;
    std::string name_;
    uint64_t size_;
  };

  std::mutex mu_;
  int journal_;
};

struct PowerLossReport {
  int files_cut = 0;
  uint64_t bytes_dropped = 0;
};

// Cuts every journaled file back to its last synced length. With `torn_wal`, a WAL file keeps a random
// part of its unsynced tail instead (a write the disk had half done). Returns what was dropped.
inline PowerLossReport ApplyPowerLoss(const std::string& journal_path, bool torn_wal, std::mt19937* rng) {
  std::map<std::string, uint64_t> synced;  // file -> length that survives
  std::ifstream in(journal_path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind, name, other;
    fields >> kind >> name;
    if (kind == "C") {
      synced[name] = 0;
    } else if (kind == "S") {
      uint64_t size = 0;
      if (fields >> size) synced[name] = size;  // a torn last line (cut by the kill) is ignored
    } else if (kind == "M" && (fields >> other)) {
      auto it = synced.find(name);
      if (it != synced.end()) {
        synced[other] = it->second;
        synced.erase(name);
      }
    } else if (kind == "D") {
      synced.erase(name);
    }
  }
  PowerLossReport report;
  for (const auto& [name, length] : synced) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(name, ec);
    if (ec || size <= length) continue;
    uint64_t keep = length;
    if (torn_wal && absl::EndsWith(name, ".log")) {
      keep += std::uniform_int_distribution<uint64_t>(0, size - length)(*rng);
    }
    std::filesystem::resize_file(name, keep, ec);
    if (!ec) {
      ++report.files_cut;
      report.bytes_dropped += size - keep;
    }
  }
  std::filesystem::remove(journal_path);
  return report;
}

}  // namespace idem::testing

#endif  // IDEM_TESTING_POWER_LOSS_FS_H_
