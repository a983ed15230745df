// The fast path: a never-seen ID is answered by the memtable bloom and the SST filters, with no
// data-block read. Observed through RocksDB's perf context.
#include <string>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/perf_context.h"
#include "rocksdb/perf_level.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;

struct ProbeCounts {
  uint64_t block_reads = 0;
  uint64_t sst_filter_misses = 0;
  uint64_t fast_path_hits = 0;
};

ProbeCounts ProbeNeverSeen(int bloom_bits, int stored, int probes) {
  ScratchDir dir;
  Options options = ManualOptions();
  options.bloom_bits_per_key = bloom_bits;
  options.block_cache_bytes = 1 << 20;
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options, dir.Sub("db"));
  EXPECT_THAT(store, IsOk());
  for (int i = 0; i < stored; ++i) {
    const std::string id = "k" + std::to_string(2 * i);  // probes interleave with these keys
    absl::StatusOr<Reservation> r = (*store)->Reserve(id);
    EXPECT_THAT(r, IsOk());
    EXPECT_THAT((*store)->Commit(id, r->token), IsOk());
  }
  EXPECT_TRUE((*store)->db()->Flush(rocksdb::FlushOptions(), (*store)->column_family()).ok());
  // Reopen so that no data block is cached: any block needed would be a real read.
  store->reset();
  store = Store::Open(options, dir.Sub("db"));
  EXPECT_THAT(store, IsOk());

  const uint64_t hits_before = (*store)->GetStats().fast_path_hits;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);  // idem quiets only the default
  rocksdb::get_perf_context()->Reset();
  for (int i = 0; i < probes; ++i) {
    absl::StatusOr<Reservation> r = (*store)->Reserve("k" + std::to_string(2 * i + 1));
    EXPECT_THAT(r, IsOk());
    EXPECT_EQ(r->verdict, Verdict::kReserved);
  }
  ProbeCounts counts;
  counts.block_reads = rocksdb::get_perf_context()->block_read_count;
  counts.sst_filter_misses = rocksdb::get_perf_context()->bloom_sst_miss_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  counts.fast_path_hits = (*store)->GetStats().fast_path_hits - hits_before;
  return counts;
}

TEST(FastPathTest, NeverSeenIdReadsNoDataBlockAfterFlush) {
  constexpr int kProbes = 2000;
  const ProbeCounts with_filters = ProbeNeverSeen(10, 20000, kProbes);
  // ~1 % false positives may read a block; every other probe is answered by the filter.
  EXPECT_LE(with_filters.block_reads, kProbes / 25u);
  EXPECT_GE(with_filters.sst_filter_misses, kProbes * 9u / 10);
  EXPECT_GE(with_filters.fast_path_hits, kProbes * 9u / 10);
}

// The control: without filters the same probes must read data blocks, which shows the test above
// measures the filter and not an accident of caching.
TEST(FastPathTest, WithoutFiltersNeverSeenIdsReadDataBlocks) {
  constexpr int kProbes = 2000;
  const ProbeCounts without = ProbeNeverSeen(0, 20000, kProbes);
  EXPECT_GT(without.block_reads, 0u);
  EXPECT_EQ(without.sst_filter_misses, 0u);
}

TEST(FastPathTest, MemtableBloomAnswersNeverSeenIds) {
  ScratchDir dir;
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  for (int i = 0; i < 1000; ++i) {  // committed: records in the memtable
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("mem-" + std::to_string(i)));
    ASSERT_THAT(store->Commit("mem-" + std::to_string(i), r.token), IsOk());
  }
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);  // idem quiets only the default
  rocksdb::get_perf_context()->Reset();
  for (int i = 0; i < 1000; ++i) ASSERT_THAT(store->Reserve("absent-" + std::to_string(i)), IsOk());
  const uint64_t memtable_misses = rocksdb::get_perf_context()->bloom_memtable_miss_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  EXPECT_GE(memtable_misses, 900u);
}

}  // namespace
}  // namespace idem
