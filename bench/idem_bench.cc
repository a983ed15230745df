// idem's benchmarks against the floor (raw RocksDB with the same options, same data) in one run.
// Names are stable across versions: compare BM_<case> between runs; the ratios are what matter.
// Extra flag (before Google Benchmark's own): --preload=N records for the lookup cases (default 200000).
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "idem/store.h"
#include "testing/workload.h"

namespace idem::bench {
namespace {

std::atomic<uint64_t> g_preload{200'000};
// The value the floor writes: the size of an idem reservation record, so both write the same bytes.
const std::string kRawValue(11, 'v');

// The floor and every idem case share these options; `durable` selects where reservations live.
Options BenchOptions(bool durable = false) {
  Options options;
  options.maintenance_interval = absl::ZeroDuration();
  options.durable_reservations = durable;
  return options;
}

// IDs never used before in this process, so "new" stays new across Google Benchmark's repeated runs.
uint64_t FreshBase() {
  static std::atomic<uint64_t> next{1ULL << 40};
  return next.fetch_add(1ULL << 32);
}

// ---- The floor --------------------------------------------------------------------------------------

// Puts of fresh IDs into `cf` of `db`, one per iteration: the write floors.
void RunPuts(benchmark::State& state, rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
             const rocksdb::WriteOptions& write_options) {
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = FreshBase();
  std::string key;
  for (auto _ : state) {
    ids.Make(i++, &key);
    latency.Start();
    rocksdb::Status s = db->Put(write_options, cf, key, kRawValue);
    latency.Stop();
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// A plain RocksDB as a user would open it without idem (bench_util.h), WAL on, no sync: the floor the
// issue's "beats a hand-written Get+Put" targets compare with.
void BM_Floor_PlainPut(benchmark::State& state) {
  Scratch dir("plain-put");
  std::unique_ptr<rocksdb::DB> db;
  if (rocksdb::Status s = OpenPlainRocksDb(dir.path(), &db); !s.ok()) return state.SkipWithError(s.ToString().c_str());
  RunPuts(state, db.get(), db->DefaultColumnFamily(), rocksdb::WriteOptions());
}

void BM_Floor_RawPut(benchmark::State& state) {
  Scratch dir("raw-put");
  RawDb raw(BenchOptions(), dir.path());
  if (!raw.status.ok()) return state.SkipWithError(raw.status.ToString().c_str());
  RunPuts(state, raw.db.get(), raw.cf(), raw.write_options);
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
    db.ids.Make(Mix64(i++) % PreloadCount(), &key);
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
  auto store = Store::Open(BenchOptions(state.range(0) != 0), dir.path());
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

// Redeliveries of the `window` most recently committed IDs (all of them when window is 0).
void RunDuplicates(benchmark::State& state, LoadedStore& loaded, uint64_t window) {
  LatencyRecorder latency(state);
  std::string id;
  const uint64_t span = window == 0 || window > PreloadCount() ? PreloadCount() : window;
  const uint64_t first = PreloadCount() - span;
  uint64_t i = 0;
  for (auto _ : state) {
    loaded.ids.Make(first + Mix64(i++) % span, &id);
    latency.Start();
    absl::StatusOr<Reservation> r = loaded.store->Reserve(id);
    latency.Stop();
    if (!r.ok() || r->verdict != Verdict::kDuplicate) return state.SkipWithError("expected a duplicate");
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

void BM_Reserve_DuplicateHot(benchmark::State& state) {
  // Redeliveries cluster within seconds of the first delivery (producer retries, consumer restarts):
  // the hot set is the last 10 000 commits, well inside the default recent-commit cache.
  static auto* loaded = new LoadedStore("dup-hot", /*cold=*/false);
  RunDuplicates(state, *loaded, 10'000);
}

void BM_Reserve_DuplicateCold(benchmark::State& state) {
  // Every committed ID, flushed and compacted; reopened so that the recent-commit cache is empty and
  // each lookup goes to the SST files (through the block cache, as the floor's GetHit does).
  static auto* loaded = [] {
    auto* l = new LoadedStore("dup-cold", /*cold=*/true);
    l->store.reset();
    l->store = *Store::Open(BenchOptions(), l->dir.path());
    return l;
  }();
  RunDuplicates(state, *loaded, 0);
}

// The consumer's path: Reserve + Commit of fresh IDs, timed per event. `store` is read only inside the
// timing loop, whose start is the barrier after which a shared store is open (see RunSharedCycles).
void RunCycles(benchmark::State& state, const std::unique_ptr<Store>& store) {
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = FreshBase();
  std::string id;
  for (auto _ : state) {
    ids.Make(i++, &id);
    latency.Start();
    absl::StatusOr<Reservation> r = store->Reserve(id);
    absl::Status committed = r.ok() ? store->Commit(id, r->token) : r.status();
    latency.Stop();
    if (!committed.ok()) {
      state.SkipWithError(committed.ToString().c_str());
      break;
    }
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// RunCycles on one store shared by every thread of the benchmark: thread 0 opens it before the timing
// loop (whose start is a barrier for all threads) and closes it after the loop's closing barrier.
void RunSharedCycles(benchmark::State& state, const Options& options) {
  static Scratch* dir = nullptr;
  static std::unique_ptr<Store> store;
  if (state.thread_index() == 0) {
    dir = new Scratch("cycle-shared");
    store = *Store::Open(options, dir->path());
  }
  RunCycles(state, store);
  if (state.thread_index() == 0) {
    store.reset();
    delete dir;
  }
}

void BM_Cycle(benchmark::State& state) {
  Scratch dir("cycle");
  auto store = Store::Open(BenchOptions(state.range(0) != 0), dir.path());
  if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
  RunCycles(state, *store);
}

// Reserve + Commit of a polled batch of N events: one MultiGet-backed ReserveBatch, one CommitBatch.
void BM_CycleBatch(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Scratch dir("cycle-batch");
  auto store = Store::Open(BenchOptions(), dir.path());
  if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t next = FreshBase();
  std::vector<std::string> names(n);
  std::vector<std::string_view> views(n);
  std::vector<CommitRequest> commits(n);
  for (auto _ : state) {
    for (size_t k = 0; k < n; ++k) {
      ids.Make(next++, &names[k]);
      views[k] = names[k];
    }
    latency.Start();
    std::vector<absl::StatusOr<Reservation>> reserved = (*store)->ReserveBatch(views);
    for (size_t k = 0; k < n; ++k) commits[k] = {views[k], reserved[k].ok() ? reserved[k]->token : 0, {}, nullptr};
    std::vector<absl::Status> committed = (*store)->CommitBatch(commits);
    latency.Stop();
    for (const absl::Status& s : committed) {
      if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
    }
  }
  latency.Report(static_cast<double>(n));  // per event
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.counters["ns_per_event"] = benchmark::Counter(static_cast<double>(state.iterations() * n),
                                                      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The consumer's path from several threads sharing one store.
void BM_Cycle_Threads(benchmark::State& state) { RunSharedCycles(state, BenchOptions()); }

// Durability modes of the consumer's path: 0 = WAL written, not fsynced (sync = false); 1 = WAL fsynced
// by a background timer every 10 ms (bounded loss on power failure); 2 = fsync before every Commit
// returns (sync = true). Threads share fsyncs through RocksDB's group commit in mode 2.
void BM_Cycle_Durability(benchmark::State& state) {
  Options options = BenchOptions();
  options.sync = state.range(0) == 2;
  if (state.range(0) == 1) options.wal_sync_interval = absl::Milliseconds(10);
  RunSharedCycles(state, options);
}

// Space: bytes of SST per live 16-byte ID after a full compaction (one iteration; the figure is the
// counter, not the time).
void BM_Space_PerLiveId(benchmark::State& state) {
  for (auto _ : state) {
    Scratch dir("space");
    auto store = Store::Open(BenchOptions(), dir.path());
    if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
    IdGenerator ids(IdShape::kRandom16);
    std::string id;
    const uint64_t n = PreloadCount();
    for (uint64_t i = 0; i < n; ++i) {
      ids.Make(i, &id);
      absl::StatusOr<Reservation> r = (*store)->Reserve(id);
      if (r.ok()) (*store)->Commit(id, r->token).IgnoreError();
    }
    (*store)->CompactExpired().IgnoreError();
    uint64_t sst = 0;
    (*store)->db()->GetIntProperty((*store)->column_family(), "rocksdb.live-sst-files-size", &sst);
    state.counters["bytes_per_id"] = static_cast<double>(sst) / static_cast<double>(n);
  }
}

BENCHMARK(BM_Floor_PlainPut);
BENCHMARK(BM_Floor_RawPut);
BENCHMARK(BM_Floor_RawGetHit);
BENCHMARK(BM_Floor_RawGetMiss);
BENCHMARK(BM_Reserve_New)->ArgName("durable")->Arg(0)->Arg(1);
BENCHMARK(BM_Reserve_DuplicateHot);
BENCHMARK(BM_Reserve_DuplicateCold);
BENCHMARK(BM_Cycle)->ArgName("durable")->Arg(0)->Arg(1);
BENCHMARK(BM_CycleBatch)->ArgName("batch")->Arg(1)->Arg(16)->Arg(64)->Arg(256);
BENCHMARK(BM_Cycle_Threads)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_Cycle_Durability)->ArgName("mode")->Arg(0)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_Cycle_Durability)->ArgName("mode")->Arg(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_Space_PerLiveId)->Iterations(1)->Unit(benchmark::kMillisecond);

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
