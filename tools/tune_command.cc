#include "tools/tune_command.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "engine/db/rocksdb_options.h"
#include "idem/options.h"
#include "tools/tune.h"
#include "tools/tune_report.h"

namespace idem::tools {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Presets fill every flag the user did not give.
struct Preset {
  Workload workload;
  std::vector<std::string> profiles;
  std::vector<int> bloom_bits;
  std::vector<uint64_t> block_cache, memtable;
  std::vector<std::string> leases, sync;
  uint64_t fifo_cap;
};

bool PresetNamed(const std::string& name, Preset* p) {
  p->workload = Workload();
  p->bloom_bits = {10};
  p->block_cache = {8 << 20};
  p->leases = {"memory"};
  p->sync = {"off"};
  if (name == "short") {  // about a minute on 2 cores: 4 TTL periods per configuration
    p->workload.ttl = absl::Seconds(60);
    p->workload.rate = 2000;
    p->workload.events = 480000;
    p->workload.duplicate_distance = 100000;
    p->profiles = {"leveled", "universal", "fifo", "fifo-capped"};
    p->memtable = {4 << 20};
    p->fifo_cap = 4 << 20;
    return true;
  }
  if (name == "standard") {  // several minutes: memtable sizes and lease modes as well
    p->workload.ttl = absl::Minutes(2);
    p->workload.rate = 5000;
    p->workload.events = 2400000;
    p->workload.duplicate_distance = 1000000;
    p->profiles = {"leveled", "universal", "fifo"};
    p->memtable = {8 << 20, 32 << 20};
    p->leases = {"memory", "durable"};
    p->fifo_cap = 32 << 20;
    return true;
  }
  return false;
}

// Prints progress on a terminal only; `\r` keeps it to one line.
void PrintProgress(const Progress& p, const std::string& name) {
  const double rate = p.elapsed_seconds > 0 ? p.events_done / p.elapsed_seconds : 0;
  const double eta = rate > 0 ? (p.events_total - p.events_done) / rate : 0;
  std::fprintf(stderr, "\r[%zu/%zu] %-44s %5.0fs  %9llu/%llu events  %7.0f/s  ETA %4.0fs ", p.config_index + 1,
               p.config_count, name.c_str(), p.elapsed_seconds, (unsigned long long)p.events_done,
               (unsigned long long)p.events_total, rate, eta);
  if (p.events_done >= p.events_total) std::fputc('\n', stderr);
  std::fflush(stderr);
}

bool ParseDurationFlag(const std::string& text, const char* name, absl::Duration* out) {
  if (text.empty()) return true;
  if (!absl::ParseDuration(text, out) || *out <= absl::ZeroDuration()) {
    std::fprintf(stderr, "idemctl tune: --%s '%s' is not a positive duration (e.g. 90s, 10m, 24h)\n", name,
                 text.c_str());
    return false;
  }
  return true;
}

}  // namespace

CLI::App* AddTuneCommand(CLI::App& app, TuneFlags* f) {
  auto* tune = app.add_subcommand(
      "tune",
      "measure configurations on a scratch store under simulated time: speed, amplification, bytes per ID, "
      "fast-path share, and duplicates wrongly admitted (unsafe configurations are never recommended). "
      "Flags not given come from the preset; list flags take comma-separated values and tune runs every "
      "combination.");
  tune->add_option("--preset", f->preset,
                   "short (4 configurations, 4 TTL periods each: under a minute) or standard (12 configurations incl. "
                   "memtable sizes and durable leases: several minutes)")
      ->check(CLI::IsMember({"short", "standard"}))
      ->capture_default_str();
  tune->add_option("--ttl", f->ttl, "retention of committed IDs, simulated (short: 60s)");
  tune->add_option("--lease", f->lease, "reservation lease, simulated (default 5s)");
  tune->add_option("--rate", f->rate,
                   "deliveries per simulated second; sets how fast simulated time passes "
                   "(the run itself goes as fast as the store allows)")
      ->check(CLI::PositiveNumber);
  tune->add_option("--duplicates", f->duplicates, "share of deliveries that are redeliveries, 0..1 (default 0.1)")
      ->check(CLI::Range(0.0, 1.0));
  tune->add_option("--distance", f->distance,
                   "a redelivery repeats one of the last N deliveries (uniformly); beyond the TTL it is new again")
      ->check(CLI::PositiveNumber);
  tune->add_option("--shape", f->shape, "ID shape: random16, uuid4, uuid7 or tpo (topic-partition-offset)")
      ->check(CLI::IsMember({"random16", "uuid4", "uuid7", "tpo"}));
  tune->add_option("--events", f->events, "deliveries per configuration")->check(CLI::PositiveNumber);
  tune->add_option("--max-seconds", f->max_seconds, "stop each configuration after this much real time");
  tune->add_option("--threads", f->threads, "worker threads (default 1)")->check(CLI::Range(1, 64));
  tune->add_option("--profiles", f->profiles,
                   "compaction profiles: leveled, universal, fifo, fifo-capped (FIFO "
                   "with RocksDB's size cap, scaled to --fifo-cap: shown unsafe)")
      ->delimiter(',')
      ->check(CLI::IsMember({"leveled", "universal", "fifo", "fifo-capped"}));
  tune->add_option("--bloom-bits", f->bloom_bits, "filter bits per key (0 = no filters)")
      ->delimiter(',')
      ->check(CLI::Range(0, 64));
  tune->add_option("--block-cache", f->block_cache, "block cache sizes (e.g. 8M,64M)")
      ->delimiter(',')
      ->transform(CLI::AsSizeValue(false));
  tune->add_option("--memtable", f->memtable, "memtable sizes (e.g. 4M,64M)")
      ->delimiter(',')
      ->transform(CLI::AsSizeValue(false));
  tune->add_option("--leases", f->leases, "where reservations live: memory, durable")
      ->delimiter(',')
      ->check(CLI::IsMember({"memory", "durable"}));
  tune->add_option("--sync", f->sync, "fsync per write: off, on (on costs an fsync per commit)")
      ->delimiter(',')
      ->check(CLI::IsMember({"off", "on"}));
  tune->add_option("--fifo-cap", f->fifo_cap, "size cap of the fifo-capped profile (e.g. 4M)")
      ->transform(CLI::AsSizeValue(false));
  tune->add_option("--objective", f->objective, "what 'best' means among safe configurations")
      ->check(CLI::IsMember({"throughput", "p99", "space"}))
      ->capture_default_str();
  tune->add_option("--out", f->out, "directory for results.csv, timeline.csv, disk.png, latency.png")
      ->capture_default_str();
  tune->add_option("--scratch", f->scratch, "where the scratch stores go (default: the system temp directory)");
  tune->add_flag("--no-plots", f->no_plots, "write the CSV files only");
  tune->add_option("--replot", f->replot, "only redraw the plots from the CSV files in this directory");
  return tune;
}

int RunTune(const TuneFlags& f) {
  if (!f.replot.empty()) {
    if (std::string error = RenderPlots(f.replot); !error.empty()) {
      std::fprintf(stderr, "idemctl tune: %s\n", error.c_str());
      return kExitFailed;
    }
    std::printf("wrote %s/disk.png, %s/latency.png\n", f.replot.c_str(), f.replot.c_str());
    return 0;
  }
  Preset p;
  if (!PresetNamed(f.preset, &p)) return kExitUsage;
  Workload w = p.workload;
  if (!ParseDurationFlag(f.ttl, "ttl", &w.ttl) || !ParseDurationFlag(f.lease, "lease", &w.lease)) return kExitUsage;
  w.ttl_from_user = !f.ttl.empty();
  w.lease_from_user = !f.lease.empty();
  {
    // The store's own check (lease < ttl and the rest), not a copy of it.
    Options check;
    check.ttl = w.ttl;
    check.lease = w.lease;
    if (absl::Status s = engine::ValidateOptions(check); !s.ok()) {
      std::fprintf(stderr, "idemctl tune: %s\n", std::string(s.message()).c_str());
      return kExitUsage;
    }
  }
  if (f.rate > 0) w.rate = f.rate;
  if (f.duplicates >= 0) w.duplicate_rate = f.duplicates;
  if (f.distance > 0) w.duplicate_distance = f.distance;
  if (!f.shape.empty()) bench::ParseShape(f.shape, &w.shape);
  if (f.events > 0) w.events = f.events;
  if (f.max_seconds > 0) w.max_seconds = f.max_seconds;
  if (f.threads > 0) w.threads = f.threads;

  auto pick = [](const auto& given, const auto& preset) { return given.empty() ? preset : given; };
  std::vector<bool> durable, sync;
  for (const auto& l : pick(f.leases, p.leases)) durable.push_back(l == "durable");
  for (const auto& s : pick(f.sync, p.sync)) sync.push_back(s == "on");
  std::vector<size_t> cache, memtable;
  for (uint64_t b : pick(f.block_cache, p.block_cache)) cache.push_back(b);
  for (uint64_t b : pick(f.memtable, p.memtable)) memtable.push_back(b);
  const std::vector<Configuration> configs =
      Configurations(pick(f.profiles, p.profiles), pick(f.bloom_bits, p.bloom_bits), cache, memtable, durable, sync,
                     f.fifo_cap > 0 ? f.fifo_cap : p.fifo_cap);

  std::error_code ec;
  std::filesystem::create_directories(f.out, ec);
  if (ec) {
    std::fprintf(stderr, "idemctl tune: cannot create %s: %s\n", f.out.c_str(), ec.message().c_str());
    return kExitFailed;
  }
  const std::string scratch_root =
      (f.scratch.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(f.scratch)) /
      absl::StrCat("idem-tune-", getpid());
  // Made here, so that removing it at the end removes nothing of anyone else's.
  if (std::filesystem::exists(scratch_root, ec)) {
    std::fprintf(stderr, "idemctl tune: %s exists already; not using (or removing) it\n", scratch_root.c_str());
    return kExitFailed;
  }
  std::filesystem::create_directories(scratch_root, ec);
  if (ec) {
    std::fprintf(stderr, "idemctl tune: cannot create %s: %s\n", scratch_root.c_str(), ec.message().c_str());
    return kExitFailed;
  }

  const ProgressCallback progress = isatty(STDERR_FILENO) ? PrintProgress : nullptr;
  std::vector<Result> results;
  for (size_t i = 0; i < configs.size(); ++i) {
    results.push_back(RunConfiguration(w, configs[i], scratch_root, i, configs.size(), progress));
  }
  std::filesystem::remove_all(scratch_root, ec);

  const Objective objective = f.objective == "p99"     ? Objective::kP99
                              : f.objective == "space" ? Objective::kSpace
                                                       : Objective::kThroughput;
  const int best = BestResult(results, objective);
  PrintTable(stdout, w, results, best);
  if (std::string error = WriteCsv(f.out, w, results); !error.empty()) {
    std::fprintf(stderr, "idemctl tune: %s\n", error.c_str());
    return kExitFailed;
  }
  std::printf("\nwrote %s/results.csv, %s/timeline.csv\n", f.out.c_str(), f.out.c_str());
  if (!f.no_plots) {
    std::fflush(stdout);  // before python writes to the same stdout
    if (std::string error = RenderPlots(f.out); !error.empty()) {
      std::printf("idemctl tune: %s\n", error.c_str());
    } else {
      std::printf("wrote %s/disk.png, %s/latency.png\n", f.out.c_str(), f.out.c_str());
    }
  }
  for (const Result& r : results) {
    if (!r.error.empty() && !r.refused_as_unsafe) return kExitFailed;
  }
  return 0;
}

}  // namespace idem::tools
