// idem's benchmarks against the floor (raw RocksDB with the same options, same data) in one run.
// Names are stable across versions: compare BM_<case> between runs; the ratios are what matter.
// Extra flag (before Google Benchmark's own): --preload=N records for the lookup cases (default 200000).
#include <atomic>
#include <cstring>
#include <memory>
#include <string>

#include "bench/bench_util.h"
#include "bench/workload.h"
#include "idem/store.h"

namespace idem::bench {
namespace {

std::atomic<uint64_t> g_preload{200'000};
// The value the floor writes: the size of an idem reservation record, so both write the same bytes.
const std::string kRawValue(11, 'v');

Options BenchOptions() {
  Options options;
  options.maintenance_interval = absl::ZeroDuration();
  return options;
}

// IDs never used before in this process, so "new" stays new across Google Benchmark's repeated runs.
uint64_t FreshBase() {
  static std::atomic<uint64_t> next{1ULL << 40};
  return next.fetch_add(1ULL << 32);
}

// ---- The floor --------------------------------------------------------------------------------------

void BM_Floor_RawPut(benchmark::State& state) {
  Scratch dir("raw-put");
  RawDb raw(BenchOptions(), dir.path());
  if (!raw.status.ok()) return state.SkipWithError(raw.status.ToString().c_str());
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = FreshBase();
  std::string key;
  for (auto _ : state) {
    ids.Make(i++, &key);
    latency.Start();
    rocksdb::Status s = raw.db->Put(raw.write_options, raw.cf(), key, kRawValue);
    latency.Stop();
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// A raw DB holding `PreloadCount()` keys, flushed and compacted; shared by the Get cases.
struct LoadedRawDb {
  LoadedRawDb() : dir("raw-loaded"), raw(BenchOptions(), dir.path()), ids(IdShape::kRandom16) {
    std::string key;
    for (uint64_t i = 0; i < PreloadCount(); ++i) {
      ids.Make(i, &key);
      raw.db->Put(raw.write_options, raw.cf(), key, kRawValue).PermitUncheckedError();
    }
    raw.FlushAndCompact();
  }
  Scratch dir;
  RawDb raw;
  IdGenerator ids;
};

LoadedRawDb& LoadedRaw() {
  static auto* db = new LoadedRawDb();  // lives for the process: loading once serves every run
  return *db;
}

void BM_Floor_RawGetHit(benchmark::State& state) {
  LoadedRawDb& db = LoadedRaw();
  LatencyRecorder latency(state);
  std::string key;
  rocksdb::PinnableSlice value;
  uint64_t i = 0;
  for (auto _ : state) {
    db.ids.Make(i++ % PreloadCount(), &key);
    latency.Start();
    value.Reset();
    rocksdb::Status s = db.raw.db->Get(rocksdb::ReadOptions(), db.raw.cf(), key, &value);
    latency.Stop();
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

void BM_Floor_RawGetMiss(benchmark::State& state) {
  LoadedRawDb& db = LoadedRaw();
  IdGenerator absent(IdShape::kRandom16, /*seed=*/99);
  LatencyRecorder latency(state);
  std::string key;
  rocksdb::PinnableSlice value;
  uint64_t i = 0;
  for (auto _ : state) {
    absent.Make(i++, &key);
    latency.Start();
    value.Reset();
    rocksdb::Status s = db.raw.db->Get(rocksdb::ReadOptions(), db.raw.cf(), key, &value);
    latency.Stop();
    if (!s.IsNotFound()) return state.SkipWithError("expected a miss");
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// ---- idem --------------------------------------------------------------------------------------------

void BM_Reserve_New(benchmark::State& state) {
  Scratch dir("reserve-new");
  auto store = Store::Open(BenchOptions(), dir.path());
  if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = FreshBase();
  std::string id;
  for (auto _ : state) {
    ids.Make(i++, &id);
    latency.Start();
    absl::StatusOr<Reservation> r = (*store)->Reserve(id);
    latency.Stop();
    if (!r.ok() || r->verdict != Verdict::kReserved) return state.SkipWithError("Reserve(new) failed");
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// A store holding `PreloadCount()` committed IDs; `cold` flushes and compacts them to the bottom level.
struct LoadedStore {
  LoadedStore(const std::string& name, bool cold) : dir(name), ids(IdShape::kRandom16) {
    store = *Store::Open(BenchOptions(), dir.path());
    std::string id;
    for (uint64_t i = 0; i < PreloadCount(); ++i) {
      ids.Make(i, &id);
      absl::StatusOr<Reservation> r = store->Reserve(id);
      if (r.ok()) store->Commit(id, r->token).IgnoreError();
    }
    if (cold) store->CompactExpired().IgnoreError();
  }
  Scratch dir;
  IdGenerator ids;
  std::unique_ptr<Store> store;
};

void RunDuplicates(benchmark::State& state, LoadedStore& loaded) {
  LatencyRecorder latency(state);
  std::string id;
  uint64_t i = 0;
  for (auto _ : state) {
    loaded.ids.Make(i++ % PreloadCount(), &id);
    latency.Start();
    absl::StatusOr<Reservation> r = loaded.store->Reserve(id);
    latency.Stop();
    if (!r.ok() || r->verdict != Verdict::kDuplicate) return state.SkipWithError("expected a duplicate");
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

void BM_Reserve_DuplicateHot(benchmark::State& state) {
  static auto* loaded = new LoadedStore("dup-hot", /*cold=*/false);
  RunDuplicates(state, *loaded);
}

void BM_Reserve_DuplicateCold(benchmark::State& state) {
  static auto* loaded = new LoadedStore("dup-cold", /*cold=*/true);
  RunDuplicates(state, *loaded);
}

void BM_Cycle(benchmark::State& state) {
  Scratch dir("cycle");
  auto store = Store::Open(BenchOptions(), dir.path());
  if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = FreshBase();
  std::string id;
  for (auto _ : state) {
    ids.Make(i++, &id);
    latency.Start();
    absl::StatusOr<Reservation> r = (*store)->Reserve(id);
    absl::Status committed = r.ok() ? (*store)->Commit(id, r->token) : r.status();
    latency.Stop();
    if (!committed.ok()) return state.SkipWithError(committed.ToString().c_str());
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Floor_RawPut);
BENCHMARK(BM_Floor_RawGetHit);
BENCHMARK(BM_Floor_RawGetMiss);
BENCHMARK(BM_Reserve_New);
BENCHMARK(BM_Reserve_DuplicateHot);
BENCHMARK(BM_Reserve_DuplicateCold);
BENCHMARK(BM_Cycle);

}  // namespace

uint64_t PreloadCount() { return g_preload.load(); }
void SetPreloadCount(uint64_t n) { g_preload = n == 0 ? 1 : n; }

}  // namespace idem::bench

int main(int argc, char** argv) {
  // Our own flags first; Google Benchmark rejects what it does not know.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--preload=", 10) == 0) {
      idem::bench::SetPreloadCount(std::strtoull(argv[i] + 10, nullptr, 10));
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
