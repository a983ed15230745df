// Helpers for the benchmarks: scratch directories, per-operation latency percentiles as user counters,
// and the raw RocksDB "floor" opened with exactly the options idem uses.
#ifndef IDEM_BENCH_BENCH_UTIL_H_
#define IDEM_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "benchmark/benchmark.h"
#include "engine/db/column_families.h"
#include "engine/db/rocksdb_options.h"
#include "idem/options.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"

namespace idem::bench {

// Number of records loaded before the lookup benchmarks (overridable with --preload=N for smoke runs).
uint64_t PreloadCount();
void SetPreloadCount(uint64_t n);

// A directory removed at destruction.
class Scratch {
 public:
  explicit Scratch(const std::string& name) {
    path_ = std::filesystem::temp_directory_path() / ("idem-bench-" + std::to_string(getpid()) + "-" + name);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Per-operation latency: time each op, then report p50/p99/p999 (nanoseconds) as user counters.
class LatencyRecorder {
 public:
  explicit LatencyRecorder(benchmark::State& state) : state_(state) {
    samples_.reserve(std::min<uint64_t>(state.max_iterations, 1u << 22));
  }
  void Start() { start_ = std::chrono::steady_clock::now(); }
  void Stop() {
    if (samples_.size() < samples_.capacity()) {
      samples_.push_back(static_cast<uint32_t>(std::min<int64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count(),
          UINT32_MAX)));
    }
  }
  // Call once after the loop. `per` divides each sample (e.g. a batch's size, for per-event figures).
  void Report(double per = 1.0) {
    if (samples_.empty()) return;
    std::sort(samples_.begin(), samples_.end());
    auto at = [&](double q) { return samples_[static_cast<size_t>(q * (samples_.size() - 1))] / per; };
    state_.counters["p50_ns"] = at(0.50);
    state_.counters["p99_ns"] = at(0.99);
    state_.counters["p999_ns"] = at(0.999);
  }

 private:
  benchmark::State& state_;
  std::vector<uint32_t> samples_;
  std::chrono::steady_clock::time_point start_;
};

// A plain RocksDB as a user would open it without idem: default options plus a 10-bit bloom filter.
inline rocksdb::Status OpenPlainRocksDb(const std::string& path, std::unique_ptr<rocksdb::DB>* db) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
  db->reset(raw);
  return s;
}

// Raw RocksDB with idem's DB and column family options: the floor every idem case is compared with.
class RawDb {
 public:
  RawDb(const Options& options, const std::string& path) {
    rocksdb::DBOptions db_options = engine::DBOptionsFor(options);
    const engine::StoreColumnFamilies families = engine::ColumnFamiliesFor(options, {});
    records_index = families.records_index;
    rocksdb::DB* raw = nullptr;
    status = rocksdb::DB::Open(db_options, path, families.descriptors, &handles, &raw);
    db.reset(raw);
    write_options.sync = options.sync;
  }
  ~RawDb() {
    if (db) {
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    }
  }
  rocksdb::ColumnFamilyHandle* cf() const { return handles[records_index]; }
  void FlushAndCompact() {
    db->Flush(rocksdb::FlushOptions(), cf()).PermitUncheckedError();
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    db->CompactRange(compact, cf(), nullptr, nullptr).PermitUncheckedError();
  }

  rocksdb::Status status;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  size_t records_index = 0;
  rocksdb::WriteOptions write_options;
};

}  // namespace idem::bench

#endif  // IDEM_BENCH_BENCH_UTIL_H_
