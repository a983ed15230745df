// Soak: steady load with TTL churn for a bounded time, in real time (what is measured is the process:
// its memory, its disk, its latency). IDs expire every few seconds, so retention, compaction and the
// maintenance thread turn over many times. Per one-second window it records RSS, the store's disk size
// and the window's p99; afterwards memory and disk must be flat: the last third of the run no higher than
// the middle third (plus a small allowance), i.e. nothing accumulates. The p99 is reported, not asserted.
// IDEM_SOAK_SECONDS sets the duration (CI default 30; the long mode is minutes).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "idem/store.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;

uint64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// The store's directory by kind: data (SST, WAL, MANIFEST: what the store needs) and RocksDB's info logs.
struct Disk {
  uint64_t data = 0, info_logs = 0;
};

Disk DiskUse(const std::string& path) {
  Disk disk;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    std::error_code size_ec;
    if (!entry.is_regular_file(size_ec)) continue;
    const uint64_t size = entry.file_size(size_ec);
    (absl::StartsWith(entry.path().filename().string(), "LOG") ? disk.info_logs : disk.data) += size;
  }
  return disk;
}

struct Window {
  uint64_t rss = 0, disk = 0, info_logs = 0, events = 0;
  double p99_us = 0;
};

bool Sanitized() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;  // the sanitizers' own quarantines grow memory: figures only
#else
  return false;
#endif
}

TEST(SoakTest, MemoryDiskAndLatencyStayFlatUnderChurn) {
  const char* env = std::getenv("IDEM_SOAK_SECONDS");
  const int seconds = env != nullptr ? std::max(9, std::atoi(env)) : 30;
  constexpr double kRate = 20000;  // deliveries per second, 10 % of them redeliveries
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  Options options;
  options.ttl = absl::Seconds(3);
  options.lease = absl::Seconds(1);
  options.maintenance_interval = absl::Milliseconds(200);
  options.write_buffer_size = 1 << 20;
  // Blocks of flushed files enter the block cache and stay until evicted, so RSS climbs until the cache
  // is full; a small cache reaches that plateau within the CI run's first third.
  options.block_cache_bytes = 4 << 20;
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, path));

  std::vector<Window> windows;
  std::vector<uint32_t> latencies;
  uint64_t next_id = 0, duplicates = 0;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  for (uint64_t n = 0;; ++n) {
    // Pace to the rate: steady load, not a burst.
    const auto due = start + std::chrono::nanoseconds(static_cast<int64_t>(n * 1e9 / kRate));
    auto now = std::chrono::steady_clock::now();
    if (due > now) std::this_thread::sleep_until(due);
    now = std::chrono::steady_clock::now();
    if (now - window_start >= std::chrono::seconds(1)) {
      Window w;
      w.rss = RssBytes();
      const Disk disk = DiskUse(path);
      w.disk = disk.data;
      w.info_logs = disk.info_logs;
      w.events = latencies.size();
      std::sort(latencies.begin(), latencies.end());
      w.p99_us = latencies.empty() ? 0 : latencies[latencies.size() * 99 / 100] / 1000.0;
      windows.push_back(w);
      latencies.clear();
      window_start = now;
      if (static_cast<int>(windows.size()) >= seconds) break;
    }
    const bool redelivery = n % 10 == 9 && next_id > 1000;
    const std::string id = "soak-" + std::to_string(redelivery ? next_id - 1 - (n * 7919) % 1000 : next_id++);
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<Reservation> r = store->Reserve(id);
    ASSERT_THAT(r, IsOk());
    if (r->verdict == Verdict::kReserved) {
      ASSERT_THAT(store->Commit(id, r->token, "ok"), IsOk());
    } else {
      ++duplicates;
    }
    latencies.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count()));
  }

  std::printf("  second   events     RSS MiB   data MiB   LOG MiB   p99 us\n");
  for (size_t i = 0; i < windows.size(); ++i) {
    std::printf("  %6zu %8llu %11.1f %10.2f %9.2f %8.1f\n", i + 1, static_cast<unsigned long long>(windows[i].events),
                windows[i].rss / 1048576.0, windows[i].disk / 1048576.0, windows[i].info_logs / 1048576.0,
                windows[i].p99_us);
  }
  const size_t third = windows.size() / 3;
  auto max_of = [&](size_t from, size_t to, auto field) {
    uint64_t m = 0;
    for (size_t i = from; i < to; ++i) m = std::max<uint64_t>(m, field(windows[i]));
    return m;
  };
  auto rss = [](const Window& w) { return w.rss; };
  auto disk = [](const Window& w) { return w.disk; };
  auto p99 = [](const Window& w) { return static_cast<uint64_t>(w.p99_us * 1000); };
  const uint64_t rss_mid = max_of(third, 2 * third, rss), rss_last = max_of(2 * third, windows.size(), rss);
  const uint64_t disk_mid = max_of(third, 2 * third, disk), disk_last = max_of(2 * third, windows.size(), disk);
  std::printf(
      "[ figures  ] soak %zu s at %.0f deliveries/s (%llu redeliveries answered), ttl 3 s: max RSS "
      "%.1f -> %.1f MiB, max disk %.2f -> %.2f MiB, max window p99 %.1f -> %.1f us (middle third -> "
      "last third)\n",
      windows.size(), kRate, static_cast<unsigned long long>(duplicates), rss_mid / 1048576.0, rss_last / 1048576.0,
      disk_mid / 1048576.0, disk_last / 1048576.0, max_of(third, 2 * third, p99) / 1000.0,
      max_of(2 * third, windows.size(), p99) / 1000.0);
  if (Sanitized()) return;
  // Flat: what the last third needs is what the middle third needed, with room for allocator noise and
  // one more memtable and WAL in flight.
  EXPECT_LE(rss_last, rss_mid + rss_mid / 10 + (8u << 20));
  EXPECT_LE(disk_last, disk_mid + disk_mid / 2 + (2u << 20));
}

}  // namespace
}  // namespace idem
