#include "tools/tune.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/db/column_families.h"
#include "engine/db/rocksdb_options.h"
#include "idem/latency_histogram.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"
#include "rocksdb/perf_context.h"
#include "rocksdb/perf_level.h"
#include "rocksdb/statistics.h"
#include "tools/simulated_time.h"

namespace idem::tools {
namespace {

// Simulated runs start at a fixed instant so that two runs with the same parameters match.
constexpr int64_t kSimulatedStartMicros = 1767225600LL * 1000000;  // 2026-01-01T00:00:00Z
constexpr uint64_t kDuplicateBit = uint64_t{1} << 63;
constexpr int kTimelinePoints = 120;

std::string SizeName(uint64_t bytes) {
  if (bytes >= (1u << 30) && bytes % (1u << 30) == 0) return absl::StrCat(bytes >> 30, "G");
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return absl::StrCat(bytes >> 20, "M");
  if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) return absl::StrCat(bytes >> 10, "K");
  return absl::StrCat(bytes);
}

std::string SizeExpression(uint64_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return absl::StrCat("size_t{", bytes >> 20, "} << 20");
  if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) return absl::StrCat("size_t{", bytes >> 10, "} << 10");
  return absl::StrCat(bytes);
}

std::string DurationExpression(absl::Duration d) {
  if (d % absl::Hours(1) == absl::ZeroDuration()) return absl::StrCat("absl::Hours(", d / absl::Hours(1), ")");
  if (d % absl::Minutes(1) == absl::ZeroDuration()) {
    return absl::StrCat("absl::Minutes(", d / absl::Minutes(1), ")");
  }
  if (d % absl::Seconds(1) == absl::ZeroDuration()) {
    return absl::StrCat("absl::Seconds(", d / absl::Seconds(1), ")");
  }
  return absl::StrCat("absl::Milliseconds(", absl::ToInt64Milliseconds(d), ")");
}

uint64_t DirectoryBytes(const std::string& path) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    std::error_code size_ec;
    if (entry.is_regular_file(size_ec)) total += entry.file_size(size_ec);
  }
  return total;
}

uint64_t IntProperty(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const std::string& name) {
  uint64_t value = 0;
  db->GetIntProperty(cf, name, &value);
  return value;
}

// Removes a run's directory when the run ends, however it ends (declared before the DB, so after it closes).
struct RemovedAtExit {
  ~RemovedAtExit() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

// SST files deleted while a run goes on: for FIFO (which never compacts) each is a file dropped whole
// by its age, i.e. expiry.
class DeletedFiles : public rocksdb::EventListener {
 public:
  void OnTableFileDeleted(const rocksdb::TableFileDeletionInfo&) override { count.fetch_add(1); }
  std::atomic<uint64_t> count{0};
};

// The RocksDB instance a run uses: idem's own options, plus statistics (for write amplification) and
// the simulated clock. Attach lets tune open it itself, which Store::Open does not allow.
struct ScratchDb {
  ~ScratchDb() {
    store.reset();
    if (db) {
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      db->Close().PermitUncheckedError();
    }
  }
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::shared_ptr<rocksdb::Statistics> statistics;
  std::shared_ptr<DeletedFiles> deleted_files = std::make_shared<DeletedFiles>();
  std::unique_ptr<Store> store;
};

}  // namespace

std::string Configuration::Name() const {
  return absl::StrCat(profile, " bloom", bloom_bits, " cache", SizeName(block_cache_bytes), " mem",
                      SizeName(memtable_bytes), durable_reservations ? " durable" : " in-memory", sync ? " sync" : "");
}

Options Configuration::ToOptions(const Workload& workload) const {
  Options options;
  options.ttl = workload.ttl;
  options.lease = workload.lease;
  options.compaction = profile == "leveled"     ? CompactionProfile::kLeveled
                       : profile == "universal" ? CompactionProfile::kUniversal
                                                : CompactionProfile::kFifo;
  options.bloom_bits_per_key = bloom_bits;
  options.block_cache_bytes = block_cache_bytes;
  options.write_buffer_size = memtable_bytes;
  options.durable_reservations = durable_reservations;
  options.sync = sync;
  return options;
}

std::string Configuration::OptionsSnippet(const Workload& workload) const {
  const char* profile_name = profile == "leveled" ? "kLeveled" : profile == "universal" ? "kUniversal" : "kFifo";
  // A preset's TTL and lease are compressed stand-ins for the user's: printed as comments, never as
  // the value to use.
  const std::string ttl = workload.ttl_from_user
                              ? absl::StrCat("options.ttl = ", DurationExpression(workload.ttl), ";\n")
                              : absl::StrCat("// options.ttl = <your retention>;  (this run simulated a TTL of ",
                                             DurationExpression(workload.ttl), " to cover several periods quickly)\n");
  const std::string lease = workload.lease_from_user
                                ? absl::StrCat("options.lease = ", DurationExpression(workload.lease), ";\n")
                                : absl::StrCat("// options.lease = <longer than your slowest handler>;  (simulated: ",
                                               DurationExpression(workload.lease), ")\n");
  return absl::StrCat("idem::Options options;\n", ttl, lease,                                    //
                      "options.compaction = idem::CompactionProfile::", profile_name, ";\n",     //
                      "options.bloom_bits_per_key = ", bloom_bits, ";\n",                        //
                      "options.block_cache_bytes = ", SizeExpression(block_cache_bytes), ";\n",  //
                      "options.write_buffer_size = ", SizeExpression(memtable_bytes), ";\n",     //
                      "options.durable_reservations = ", durable_reservations ? "true" : "false", ";\n",
                      "options.sync = ", sync ? "true" : "false", ";\n");
}

std::vector<Configuration> Configurations(const std::vector<std::string>& profiles, const std::vector<int>& bloom_bits,
                                          const std::vector<size_t>& block_cache_bytes,
                                          const std::vector<size_t>& memtable_bytes,
                                          const std::vector<bool>& durable_reservations, const std::vector<bool>& sync,
                                          uint64_t fifo_cap_bytes) {
  std::vector<Configuration> out;
  for (const auto& profile : profiles) {
    for (int bits : bloom_bits) {
      for (size_t cache : block_cache_bytes) {
        for (size_t memtable : memtable_bytes) {
          for (bool durable : durable_reservations) {
            for (bool s : sync) {
              Configuration c;
              c.profile = profile;
              c.bloom_bits = bits;
              c.block_cache_bytes = cache;
              c.memtable_bytes = memtable;
              c.durable_reservations = durable;
              c.sync = s;
              c.fifo_cap_bytes = fifo_cap_bytes;
              out.push_back(c);
            }
          }
        }
      }
    }
  }
  return out;
}

Result RunConfiguration(const Workload& workload, const Configuration& config, const std::string& scratch_dir,
                        size_t index, size_t count, ProgressCallback progress) {
  Result result;
  result.config = config;
  const std::string path = absl::StrCat(scratch_dir, "/config-", index);
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  std::filesystem::create_directories(path, ec);
  RemovedAtExit cleanup{path};

  auto clock = std::make_shared<SimulatedClock>(kSimulatedStartMicros);
  SimulatedTimeEnv env(clock);
  Options options = config.ToOptions(workload);
  options.clock = clock;
  options.env = &env;
  // Simulated time runs much faster than real time; look for expired files often enough to keep up.
  options.maintenance_interval = absl::Milliseconds(100);

  ScratchDb scratch;
  {
    if (absl::Status s = engine::ValidateOptions(options); !s.ok()) {
      result.error = std::string(s.message());
      return result;
    }
    rocksdb::DBOptions db_options = engine::DBOptionsFor(options);
    scratch.statistics = rocksdb::CreateDBStatistics();
    db_options.statistics = scratch.statistics;
    db_options.listeners.push_back(scratch.deleted_files);
    rocksdb::ColumnFamilyOptions cf_options = engine::OwnedColumnFamilyOptionsFor(options);  // as Open has it
    if (config.profile == "fifo-capped") {
      cf_options.compaction_options_fifo.max_table_files_size = config.fifo_cap_bytes;
    }
    const engine::StoreColumnFamilies families = engine::ColumnFamiliesFor(options, {}, cf_options);
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(db_options, path, families.descriptors, &scratch.handles, &raw);
    if (!s.ok()) {
      result.error = s.ToString();
      return result;
    }
    scratch.db.reset(raw);
    auto store = Store::Attach(raw, scratch.handles[families.records_index], options);
    if (!store.ok()) {
      result.error = std::string(store.status().message());
      result.refused_as_unsafe = store.status().code() == absl::StatusCode::kFailedPrecondition;
      return result;
    }
    scratch.store = std::move(*store);
  }
  Store& store = *scratch.store;

  // The delivery sequence, decided up front so that threads only take the next number.
  const uint64_t events = workload.events;
  std::vector<uint64_t> deliveries(events);
  {
    bench::DuplicateSchedule schedule(workload.duplicate_rate, workload.duplicate_distance);
    uint64_t fresh = 0;
    for (uint64_t n = 0; n < events; ++n) {
      bool duplicate = false;
      const uint64_t event = schedule.Next(n, &fresh, &duplicate);
      deliveries[n] = event | (duplicate ? kDuplicateBit : 0);
    }
  }
  // Per event: the simulated time just before its last successful Commit began (0: never committed).
  // The record's deadline is at least this plus the TTL, which is what makes a verdict checkable.
  std::unique_ptr<std::atomic<int64_t>[]> committed_at(new std::atomic<int64_t>[events]());
  const int64_t ttl_us = absl::ToInt64Microseconds(workload.ttl);
  const double us_per_event = 1e6 / workload.rate;
  const bench::IdGenerator ids(workload.shape);
  const std::string result_value(workload.result_bytes, 'r');

  auto live_ids_at = [&](int64_t now_us) {
    uint64_t live = 0;
    for (uint64_t i = 0; i < events; ++i) {
      const int64_t c = committed_at[i].load(std::memory_order_relaxed);
      if (c != 0 && c + ttl_us > now_us) ++live;
    }
    return live;
  };

  LatencyHistogram latency;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reserved{0}, duplicates{0}, in_flight{0}, admitted{0}, readmitted{0};
  std::atomic<uint64_t> fast{0}, disk_reads{0}, reserves{0};
  std::mutex mu;  // guards `error` and `timeline`
  std::string error;
  const uint64_t timeline_step = std::max<uint64_t>(1, events / kTimelinePoints);

  auto worker = [&]() {
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
    rocksdb::PerfContext* perf = rocksdb::get_perf_context();
    perf->Reset();
    std::string id;
    for (;;) {
      const uint64_t n = next.fetch_add(1, std::memory_order_relaxed);
      if (n >= events || stop.load(std::memory_order_relaxed)) break;
      if (n % timeline_step == 0) {
        TimelinePoint point;
        point.simulated_seconds = (clock->micros() - kSimulatedStartMicros) / 1e6;
        point.disk_bytes = DirectoryBytes(path);
        point.sst_bytes = IntProperty(scratch.db.get(), scratch.handles[1], "rocksdb.live-sst-files-size");
        point.live_ids = live_ids_at(clock->micros());
        std::lock_guard<std::mutex> lock(mu);
        result.timeline.push_back(point);
      }
      clock->AdvanceTo(kSimulatedStartMicros + static_cast<int64_t>(static_cast<double>(n) * us_per_event));
      const uint64_t event = deliveries[n] & ~kDuplicateBit;
      ids.Make(event, &id);
      const int64_t committed = committed_at[event].load(std::memory_order_acquire);
      const uint64_t blocks_before = perf->block_read_count + perf->block_cache_hit_count;
      const uint64_t reads_before = perf->block_read_count;

      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<Reservation> r = store.Reserve(id);
      const int64_t answered_at = clock->micros();
      reserves.fetch_add(1, std::memory_order_relaxed);
      if (perf->block_read_count + perf->block_cache_hit_count == blocks_before) {
        fast.fetch_add(1, std::memory_order_relaxed);
      }
      disk_reads.fetch_add(perf->block_read_count - reads_before, std::memory_order_relaxed);
      absl::Status status = r.status();
      if (r.ok()) {
        switch (r->verdict) {
          case Verdict::kReserved: {
            reserved.fetch_add(1, std::memory_order_relaxed);
            if (committed != 0) {
              (committed + ttl_us > answered_at ? admitted : readmitted).fetch_add(1, std::memory_order_relaxed);
            }
            const int64_t commit_start = clock->micros();
            status = store.Commit(id, r->token, result_value);
            if (status.ok()) committed_at[event].store(commit_start, std::memory_order_release);
            break;
          }
          case Verdict::kDuplicate: duplicates.fetch_add(1, std::memory_order_relaxed); break;
          case Verdict::kInFlight:
          case Verdict::kConflict: in_flight.fetch_add(1, std::memory_order_relaxed); break;
        }
      }
      latency.Record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count()));
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (error.empty()) error = status.ToString();
        stop.store(true);
      }
    }
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  };

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, workload.threads); ++t) threads.emplace_back(worker);
  // The calling thread reports progress and enforces the real-time cap while the workers run.
  for (;;) {
    const uint64_t done = std::min(next.load(std::memory_order_relaxed), events);
    if (done >= events || stop.load()) break;
    if (workload.max_seconds > 0 && elapsed() >= workload.max_seconds) {
      stop.store(true);
      break;
    }
    if (progress != nullptr) progress({index, count, done, events, elapsed()}, config.Name());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& t : threads) t.join();
  result.seconds = elapsed();
  result.events = std::min(next.load(), events);
  result.error = error;
  if (progress != nullptr) progress({index, count, result.events, events, result.seconds}, config.Name());

  result.throughput = result.seconds > 0 ? result.events / result.seconds : 0;
  result.ttl_periods =
      workload.rate > 0 ? static_cast<double>(result.events) / workload.rate / absl::ToDoubleSeconds(workload.ttl) : 0;
  const LatencySummary summary = latency.Summary();
  result.p50 = summary.p50;
  result.p99 = summary.p99;
  result.p999 = summary.p999;
  result.reserved = reserved;
  result.duplicates = duplicates;
  result.in_flight = in_flight;
  result.duplicates_admitted = admitted;
  result.expired_readmitted = readmitted;
  result.fast_path_share = reserves > 0 ? static_cast<double>(fast) / reserves : 0;
  result.disk_reads_per_1000 = reserves > 0 ? 1000.0 * disk_reads / reserves : 0;
  const uint64_t flushed = scratch.statistics->getTickerCount(rocksdb::FLUSH_WRITE_BYTES);
  const uint64_t compacted = scratch.statistics->getTickerCount(rocksdb::COMPACT_WRITE_BYTES);
  result.write_amplification = flushed > 0 ? static_cast<double>(flushed + compacted) / flushed : 0;

  // Expiry that happened during the run (before the final full compaction below): filter removals, and
  // for FIFO, files dropped whole.
  const bool fifo = config.profile == "fifo" || config.profile == "fifo-capped";
  result.expired_removed = store.GetStats().expired_removed + (fifo ? scratch.deleted_files->count.load() : 0);
  // Steady state: the memtable flushed, then what a full expiry compaction leaves.
  rocksdb::FlushOptions flush;
  flush.wait = true;
  scratch.db->Flush(flush, scratch.handles[1]).PermitUncheckedError();
  result.sst_bytes = IntProperty(scratch.db.get(), scratch.handles[1], "rocksdb.live-sst-files-size");
  result.live_ids = live_ids_at(clock->micros());
  result.bytes_per_live_id = result.live_ids > 0 ? static_cast<double>(result.sst_bytes) / result.live_ids : 0;
  if (absl::Status s = store.CompactExpired(); s.ok()) {
    const uint64_t minimum = IntProperty(scratch.db.get(), scratch.handles[1], "rocksdb.live-sst-files-size");
    result.space_amplification = minimum > 0 ? static_cast<double>(result.sst_bytes) / minimum : 0;
  } else if (result.error.empty()) {
    result.error = s.ToString();
  }
  return result;
}

}  // namespace idem::tools
