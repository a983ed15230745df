// `idemctl tune`: runs the benchmark workload generator against scratch stores, one per configuration,
// under simulated time, and measures what each configuration costs and whether it stays correct.
#ifndef IDEM_TOOLS_TUNE_H_
#define IDEM_TOOLS_TUNE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/options.h"
#include "testing/workload.h"

namespace idem::tools {

// The workload: what the queue delivers. Times are simulated unless said otherwise.
struct Workload {
  double rate = 2000;                    // deliveries per simulated second (sets how fast simulated time passes)
  double duplicate_rate = 0.1;           // share of deliveries that are redeliveries
  uint64_t duplicate_distance = 100000;  // a redelivery repeats one of the last N deliveries, uniformly
  bench::IdShape shape = bench::IdShape::kUuidV4;
  absl::Duration ttl = absl::Seconds(60);
  absl::Duration lease = absl::Seconds(5);
  uint64_t events = 480000;  // deliveries per configuration
  double max_seconds = 0;    // real-time cap per configuration (0 = none)
  int threads = 1;
  size_t result_bytes = 16;  // size of the result stored with each commit
  // Whether ttl and lease are the user's (--ttl, --lease) or a preset's compressed stand-ins, which the
  // printed options must not pass off as the user's.
  bool ttl_from_user = false;
  bool lease_from_user = false;
};

// A configuration is called safe only after the run covered this many TTL periods with expired
// records removed during it: one period proves nothing about expiry (nothing has expired yet).
inline constexpr double kSafeTtlPeriods = 3;

// The knobs tune compares. `profile` also accepts "fifo-capped": FIFO with RocksDB's size cap left on
// (scaled to `fifo_cap_bytes`), the configuration that drops live IDs, kept to show that tune sees it.
struct Configuration {
  std::string profile = "leveled";  // leveled | universal | fifo | fifo-capped
  int bloom_bits = 10;
  size_t block_cache_bytes = 8 << 20;
  size_t memtable_bytes = 4 << 20;
  bool durable_reservations = false;
  bool sync = false;
  uint64_t fifo_cap_bytes = 4 << 20;

  std::string Name() const;
  // The idem::Options a user would paste (profile, filters, sizes, leases, sync, ttl, lease).
  Options ToOptions(const Workload& workload) const;
  std::string OptionsSnippet(const Workload& workload) const;
};

struct TimelinePoint {
  double simulated_seconds = 0;
  uint64_t disk_bytes = 0;  // every file in the store's directory (SST, WAL, MANIFEST)
  uint64_t sst_bytes = 0;
  uint64_t live_ids = 0;  // IDs committed within the last TTL, as the generator knows
};

struct Result {
  Configuration config;
  uint64_t events = 0;            // deliveries run (fewer than asked if max_seconds cut the run)
  double seconds = 0;             // real time
  double throughput = 0;          // deliveries per real second
  absl::Duration p50, p99, p999;  // per delivery: Reserve (+ Commit when reserved)
  uint64_t reserved = 0, duplicates = 0, in_flight = 0;
  // Deliveries answered `reserved` although the same ID had committed less than a TTL before: a
  // duplicate applied twice. Non-zero makes the configuration unsafe.
  uint64_t duplicates_admitted = 0;
  // Redeliveries of IDs older than the TTL that were admitted again (correct: their retention ended).
  uint64_t expired_readmitted = 0;
  double fast_path_share = 0;      // reserves that read no data block (memory, memtable or filters)
  double disk_reads_per_1000 = 0;  // data blocks read from disk per 1000 reserves
  double write_amplification = 0;  // (flush + compaction bytes) / flush bytes
  double space_amplification = 0;  // SST bytes at the end / SST bytes after a full expiry compaction
  double bytes_per_live_id = 0;    // SST bytes at the end / live IDs
  uint64_t live_ids = 0;
  uint64_t sst_bytes = 0;
  std::vector<TimelinePoint> timeline;
  std::string error;  // non-empty if the run failed
  // The store refused the configuration as unsafe (Attach: kFailedPrecondition, e.g. a FIFO size cap
  // that deletes live IDs); `error` says why. Unsafe, but not a failure of the run.
  bool refused_as_unsafe = false;
  // Simulated time the run covered, in TTL periods, and expired records removed while it ran (by the
  // expiry filter in compactions, or whole files dropped by FIFO).
  double ttl_periods = 0;
  uint64_t expired_removed = 0;

  // Ran cleanly, with no duplicate admitted.
  bool clean() const { return error.empty() && duplicates_admitted == 0; }
  // Clean, and the run was long enough to show it: several TTL periods, expiry having happened.
  bool proven() const { return ttl_periods >= kSafeTtlPeriods && expired_removed > 0; }
  bool safe() const { return clean() && proven(); }
};

// Cartesian product of the axes.
std::vector<Configuration> Configurations(const std::vector<std::string>& profiles, const std::vector<int>& bloom_bits,
                                          const std::vector<size_t>& block_cache_bytes,
                                          const std::vector<size_t>& memtable_bytes,
                                          const std::vector<bool>& durable_reservations, const std::vector<bool>& sync,
                                          uint64_t fifo_cap_bytes);

// Called about twice a second while a configuration runs.
struct Progress {
  size_t config_index = 0, config_count = 0;
  uint64_t events_done = 0, events_total = 0;
  double elapsed_seconds = 0;
};
using ProgressCallback = void (*)(const Progress&, const std::string& config_name);

// Runs one configuration in a fresh directory under `scratch_dir` (removed afterwards).
Result RunConfiguration(const Workload& workload, const Configuration& config, const std::string& scratch_dir,
                        size_t index, size_t count, ProgressCallback progress);

}  // namespace idem::tools

#endif  // IDEM_TOOLS_TUNE_H_
