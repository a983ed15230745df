// Partitions that move (docs/SCALING.md): restore of a partition from its changelog by SST ingestion
// against replaying its batches as writes, activate/deactivate times, and what 1, 16 and 64 active
// partitions cost in memory and threads.
//
// The source partition is built once per process with real commits (CommitBatch of 1 000 events, each
// with a ledger effect, through the partition's commit hook), its snapshot cut with
// Partition::WriteSnapshot; both logs are kept in memory, so the restore times are idem's and RocksDB's,
// not a queue's. Usage: idem_partition_bench [--ids=N] [benchmark flags]
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "idem/changelog.h"
#include "idem/partition_set.h"
#include "rocksdb/write_batch.h"

namespace idem::bench {
namespace {

size_t g_ids = 1000000;
int g_activations = 1024;  // the largest k of BM_PartitionSet_ActivateKth

std::string Scratch(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  static const std::string root =
      std::string(base ? base : "/tmp") + "/idem-partition-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(root);
  return root + "/" + name;
}

PartitionLayout Layout(int i) { return PartitionLayout{"orders/" + std::to_string(i), {"ledger"}}; }

// The source partition's two logs: every batch from the start, and a snapshot of the end state.
struct Logs {
  std::vector<std::string> batches;   // Claim, then one Batch per CommitBatch
  std::vector<std::string> snapshot;  // SnapshotBegin, chunks, SnapshotEnd
};

const Logs& SourceLogs() {
  static const Logs logs = [] {
    Logs out;
    const ClaimId claim{1, 42};
    ChangelogRecord c;
    c.claim = claim;
    out.batches.push_back(EncodeChangelogRecord(c));
    auto set = PartitionSet::Open(PartitionSetOptions(), Scratch("source"));
    if (!set.ok()) std::abort();
    ActivateOptions activate;
    activate.claim = claim;
    activate.commit_hook = [&](const PartitionCommit& commit) {
      ChangelogRecord batch;
      batch.type = ChangelogRecord::Type::kBatch;
      batch.claim = claim;
      batch.sequence = commit.sequence;
      batch.ops = *commit.ops;
      out.batches.push_back(EncodeChangelogRecord(batch));
    };
    auto p = (*set)->Activate(Layout(0), activate);
    if (!p.ok()) std::abort();
    Store& store = (*p)->store();
    char id[32];
    for (size_t done = 0; done < g_ids;) {
      std::vector<std::string> ids;
      for (size_t k = 0; k < 1000 && done < g_ids; ++k, ++done) {
        std::snprintf(id, sizeof id, "event-%016llx", static_cast<unsigned long long>(done) * 0x9E3779B97F4A7C15ULL);
        ids.emplace_back(id);
      }
      std::vector<std::string_view> views(ids.begin(), ids.end());
      std::vector<absl::StatusOr<Reservation>> reserved = store.ReserveBatch(views);
      std::vector<rocksdb::WriteBatch> effects(ids.size());
      std::vector<CommitRequest> requests;
      for (size_t k = 0; k < ids.size(); ++k) {
        effects[k].Put((*p)->family(1), "acct-" + std::to_string(k % 97), ids[k]);
        requests.push_back(CommitRequest{ids[k], reserved[k]->token, "", &effects[k]});
      }
      for (const absl::Status& s : store.CommitBatch(requests)) {
        if (!s.ok()) std::abort();
      }
    }
    if (!(*p)->WriteSnapshot(claim, -1, 256 << 10,
                             [&](const ChangelogRecord& r) {
                               out.snapshot.push_back(EncodeChangelogRecord(r));
                               return absl::OkStatus();
                             })
             .ok()) {
      std::abort();
    }
    (*set)->Close().IgnoreError();
    std::filesystem::remove_all(Scratch("source"));
    return out;
  }();
  return logs;
}

void RunRestore(benchmark::State& state, bool from_snapshot) {
  const Logs& logs = SourceLogs();
  const std::vector<std::string>& log = from_snapshot ? logs.snapshot : logs.batches;
  int run = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string path = Scratch("restore-" + std::to_string(run++));
    auto set = PartitionSet::Open(PartitionSetOptions(), path);
    if (!set.ok()) std::abort();
    state.ResumeTiming();
    absl::Status s = (*set)->Restore(Layout(0), [&](ChangelogReplayer::Sink* sink) {
      ChangelogReplayer replayer(
          from_snapshot ? ChangelogReplayer::Start::kSnapshot : ChangelogReplayer::Start::kLogStart, sink);
      for (size_t o = 0; o < log.size(); ++o) {
        if (absl::Status fed = replayer.Feed(static_cast<int64_t>(o), log[o]); !fed.ok()) return fed;
      }
      return replayer.Finish();
    });
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      break;
    }
    state.PauseTiming();
    (*set)->Close().IgnoreError();
    std::filesystem::remove_all(path);
    state.ResumeTiming();
  }
  state.counters["ids_per_s"] =
      benchmark::Counter(static_cast<double>(g_ids), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Restore_SnapshotByIngestion(benchmark::State& state) { RunRestore(state, true); }
void BM_Restore_BatchReplayAsWrites(benchmark::State& state) { RunRestore(state, false); }
BENCHMARK(BM_Restore_SnapshotByIngestion)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Restore_BatchReplayAsWrites)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

void BM_Partition_ActivateDeactivate(benchmark::State& state) {
  auto set = PartitionSet::Open(PartitionSetOptions(), Scratch("activate"));
  if (!set.ok()) std::abort();
  const bool keep = state.range(0) == 1;
  ActivateOptions activate;
  activate.use_local_copy = false;
  int i = 0;
  for (auto _ : state) {
    auto p = (*set)->Activate(Layout(i % 16), activate);
    if (!p.ok()) {
      state.SkipWithError(std::string(p.status().message()).c_str());
      break;
    }
    (*set)->Deactivate(Layout(i % 16).name, keep ? KeepLocalCopy::kKeep : KeepLocalCopy::kDrop).IgnoreError();
    ++i;
  }
  state.SetLabel(keep ? "deactivate keeps the copy (next activation drops it)" : "deactivate drops the copy");
  (*set)->Close().IgnoreError();
  std::filesystem::remove_all(Scratch("activate"));
}
BENCHMARK(BM_Partition_ActivateDeactivate)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// The cost of activating the k-th partition of a set (k-1 active already, each with its records and
// one effect family): what a member pays per partition when an assignment grows. Each iteration
// activates one more partition and, untimed, drops it again. The CPU time is the activating thread's.
// Second argument 1: the families of every partition were made beforehand in one PrepareFamilies call,
// as the Kafka member does for an assignment (0: each activation creates its own).
void BM_PartitionSet_ActivateKth(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const bool prepared = state.range(1) == 1;
  if (k > g_activations) {
    state.SkipWithError("past --activations");
    return;
  }
  const std::string path = Scratch("kth-" + std::to_string(k));
  PartitionSetOptions options;
  options.maintenance_interval = absl::ZeroDuration();  // no passes: only the activation is measured
  auto set = PartitionSet::Open(options, path);
  if (!set.ok()) std::abort();
  constexpr int kIterations = 5;
  if (prepared) {
    std::vector<PartitionLayout> all;
    for (int i = 0; i < k + kIterations; ++i) all.push_back(Layout(i));
    if (!(*set)->PrepareFamilies(all).ok()) std::abort();
  }
  for (int i = 0; i < k - 1; ++i) {
    if (!(*set)->Activate(Layout(i), ActivateOptions{}).ok()) std::abort();
  }
  int next = k;
  for (auto _ : state) {
    auto p = (*set)->Activate(Layout(next), ActivateOptions{});
    state.PauseTiming();
    if (!p.ok()) {
      state.SkipWithError(std::string(p.status().message()).c_str());
      break;
    }
    // Kept, not dropped: a drop rewrites the OPTIONS file too, and its cost is not what is measured.
    (*set)->Deactivate(Layout(next).name, KeepLocalCopy::kKeep).IgnoreError();
    ++next;
    state.ResumeTiming();
  }
  state.counters["k"] = k;
  (*set)->Close().IgnoreError();
  std::filesystem::remove_all(path);
}
BENCHMARK(BM_PartitionSet_ActivateKth)
    ->ArgsProduct({{1, 16, 64, 256, 1024}, {0, 1}})
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);

// N partitions activated in one set, from nothing: an assignment of N on a fresh member. The CPU time
// of the activating thread for all of them, with the families made together first (1) or one partition
// at a time (0).
void BM_PartitionSet_ActivateN(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const bool prepared = state.range(1) == 1;
  if (n > g_activations) {
    state.SkipWithError("past --activations");
    return;
  }
  PartitionSetOptions options;
  options.maintenance_interval = absl::ZeroDuration();
  for (auto _ : state) {
    state.PauseTiming();
    const std::string path = Scratch("n-" + std::to_string(n));
    auto set = PartitionSet::Open(options, path);
    if (!set.ok()) std::abort();
    state.ResumeTiming();
    if (prepared) {
      std::vector<PartitionLayout> all;
      for (int i = 0; i < n; ++i) all.push_back(Layout(i));
      if (!(*set)->PrepareFamilies(all).ok()) std::abort();
    }
    for (int i = 0; i < n; ++i) {
      if (!(*set)->Activate(Layout(i), ActivateOptions{}).ok()) std::abort();
    }
    state.PauseTiming();
    (*set)->Close().IgnoreError();
    set->reset();
    std::filesystem::remove_all(path);
    state.ResumeTiming();
  }
  state.counters["n"] = n;
}
BENCHMARK(BM_PartitionSet_ActivateN)->ArgsProduct({{16, 256}, {0, 1}})->Iterations(1)->Unit(benchmark::kMillisecond);

long StatusField(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
  }
  return -1;
}

// Memory (RSS) and threads of a set with N active partitions, each with 10 000 committed IDs.
void BM_PartitionSet_Footprint(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const long rss_before = StatusField("VmRSS:"), threads_before = StatusField("Threads:");
    const std::string path = Scratch("footprint-" + std::to_string(n));
    auto set = PartitionSet::Open(PartitionSetOptions(), path);
    if (!set.ok()) std::abort();
    for (int i = 0; i < n; ++i) {
      auto p = (*set)->Activate(Layout(i), ActivateOptions{});
      if (!p.ok()) std::abort();
      for (int k = 0; k < 10000; ++k) {
        const std::string id = "id-" + std::to_string(k);
        auto r = (*p)->store().Reserve(id);
        if (r.ok() && r->verdict == Verdict::kReserved) (*p)->store().Commit(id, r->token).IgnoreError();
      }
    }
    state.counters["rss_mib"] = static_cast<double>(StatusField("VmRSS:") - rss_before) / 1024.0;
    state.counters["threads"] = static_cast<double>(StatusField("Threads:") - threads_before);
    (*set)->Close().IgnoreError();
    std::filesystem::remove_all(path);
  }
}
BENCHMARK(BM_PartitionSet_Footprint)->Arg(1)->Arg(16)->Arg(64)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace idem::bench

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--ids=", 6) == 0) idem::bench::g_ids = std::strtoull(argv[i] + 6, nullptr, 10);
    if (std::strncmp(argv[i], "--activations=", 14) == 0) idem::bench::g_activations = std::atoi(argv[i] + 14);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
