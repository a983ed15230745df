#include "tools/tune_report.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

extern char** environ;

namespace idem::tools {
namespace {

// The plotting script, fed to python3 on standard input so that an installed idemctl needs no data files.
constexpr char kPlotScript[] = R"PY(
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

out = sys.argv[1]
rows = list(csv.DictReader(open(out + "/results.csv")))
timeline = list(csv.DictReader(open(out + "/timeline.csv")))

styles = {"leveled": "-", "universal": "--", "fifo": "-.", "fifo-capped": ":"}
fig, ax = plt.subplots(figsize=(10, 5.5))
xs = []
for row in rows:
    points = [t for t in timeline if t["config"] == row["config"]]
    xs = [float(t["simulated_seconds"]) / 60 for t in points]
    ys = [int(t["disk_bytes"]) / 2**20 for t in points]
    safe = row["safe"] == "yes"
    ax.plot(xs, ys, styles.get(row["profile"], "-"), linewidth=1.2 if safe else 2.5,
            label=row["config"] + ("" if safe else "  (UNSAFE)"))
ttl_min = float(rows[0]["ttl_seconds"]) / 60 if rows else 0
k = 1
while ttl_min > 0 and xs and k * ttl_min <= max(xs):
    ax.axvline(k * ttl_min, color="grey", linewidth=0.6, linestyle="--")
    k += 1
ax.set_xlabel("simulated time (minutes; dashed lines every TTL)")
ax.set_ylabel("store directory size (MiB)")
ax.set_title("Disk size over simulated time")
ax.grid(alpha=0.3)
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(out + "/disk.png", dpi=110)

fig, ax = plt.subplots(figsize=(10, 5.5))
names = [r["config"] for r in rows]
width = 0.27
for i, (col, label) in enumerate([("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]):
    vals = [float(r[col]) for r in rows]
    ax.bar([x + (i - 1) * width for x in range(len(rows))], vals, width, label=label)
ax.set_xticks(range(len(rows)))
ax.set_xticklabels(names, rotation=20, ha="right", fontsize=7)
ax.set_yscale("log")
ax.set_ylabel("latency per delivery, microseconds (log)")
ax.set_title("Reserve (+ Commit) latency per configuration")
ax.grid(alpha=0.3, axis="y")
ax.legend()
fig.tight_layout()
fig.savefig(out + "/latency.png", dpi=110)
)PY";

double Micros(absl::Duration d) { return absl::ToDoubleMicroseconds(d); }

}  // namespace

int BestResult(const std::vector<Result>& results, Objective objective) {
  int best = -1;
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    if (!r.safe()) continue;
    if (best < 0) {
      best = static_cast<int>(i);
      continue;
    }
    const Result& b = results[best];
    bool better = false;
    switch (objective) {
      case Objective::kThroughput: better = r.throughput > b.throughput; break;
      case Objective::kP99: better = r.p99 < b.p99; break;
      case Objective::kSpace: better = r.bytes_per_live_id < b.bytes_per_live_id; break;
    }
    if (better) best = static_cast<int>(i);
  }
  return best;
}

void PrintTable(std::FILE* out, const Workload& workload, const std::vector<Result>& results, int best) {
  absl::FPrintF(out,
                "workload: %s IDs, %.0f deliveries per simulated second, %.0f%% redeliveries from the last %d, "
                "ttl %s, lease %s, %d thread(s)\n\n",
                bench::ShapeName(workload.shape), workload.rate, workload.duplicate_rate * 100,
                workload.duplicate_distance, absl::FormatDuration(workload.ttl), absl::FormatDuration(workload.lease),
                workload.threads);
  absl::FPrintF(out, "  %-44s %9s %8s %8s %8s %6s %6s %7s %7s %8s %9s  %s\n", "configuration", "events/s", "p50 us",
                "p99 us", "p999 us", "w-amp", "s-amp", "B/ID", "fast %", "disk/1k", "sim min", "safety");
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::string safety;
    if (r.refused_as_unsafe) {
      safety = "UNSAFE: refused by the store: " + r.error;
    } else if (!r.error.empty()) {
      safety = "FAILED: " + r.error;
    } else if (r.duplicates_admitted > 0) {
      safety = absl::StrCat("UNSAFE: ", r.duplicates_admitted, " duplicates admitted as new");
    } else if (!r.proven()) {
      safety =
          r.ttl_periods < kSafeTtlPeriods
              ? absl::StrFormat("not proven: covered %.1f TTL periods (needs %.0f)", r.ttl_periods, kSafeTtlPeriods)
              : std::string("not proven: no expired record was removed during the run");
    } else {
      safety = "safe";
    }
    if (r.events < workload.events && r.error.empty()) {
      absl::StrAppend(&safety, " (stopped at ", r.events, " events)");
    }
    const double sim_minutes = r.events / workload.rate / 60;
    absl::FPrintF(out, "%s %-44s %9.0f %8.1f %8.1f %8.1f %6.2f %6.2f %7.1f %7.1f %8.2f %9.1f  %s\n",
                  static_cast<int>(i) == best ? "*" : " ", r.config.Name(), r.throughput, Micros(r.p50), Micros(r.p99),
                  Micros(r.p999), r.write_amplification, r.space_amplification, r.bytes_per_live_id,
                  r.fast_path_share * 100, r.disk_reads_per_1000, sim_minutes, safety);
  }
  absl::FPrintF(out,
                "\n  events/s: deliveries per real second; p50/p99/p999: Reserve (+ Commit) per delivery; w-amp: "
                "(flush + compaction bytes) / flush bytes;\n  s-amp: SST bytes / SST bytes after a full expiry "
                "compaction; B/ID: SST bytes per live ID; fast %%: reserves that read no data block;\n  disk/1k: "
                "data blocks read from disk per 1000 reserves; sim min: simulated minutes covered.\n");
  if (best >= 0) {
    absl::FPrintF(out, "\n* best safe configuration: %s. Its options:\n\n%s", results[best].config.Name(),
                  results[best].config.OptionsSnippet(workload));
    // Wall times on a shared machine move between runs: a runner-up this close may win the next run.
    const Result& b = results[best];
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      if (static_cast<int>(i) == best || !r.safe() || b.throughput <= 0) continue;
      if (r.throughput >= 0.9 * b.throughput) {
        absl::FPrintF(out,
                      "\n  %s is within 10 %% of it (%.0f against %.0f events/s): within run-to-run noise on this "
                      "machine; either is a sound choice, and another run may rank them the other way.\n",
                      r.config.Name(), r.throughput, b.throughput);
      }
    }
  } else {
    absl::FPrintF(out,
                  "\nno configuration was shown safe: none is recommended (a run must cover %.0f TTL periods with "
                  "expiry happening; raise --events or lower --ttl).\n",
                  kSafeTtlPeriods);
  }
}

std::string WriteCsv(const std::string& dir, const Workload& workload, const std::vector<Result>& results) {
  std::ofstream rows(dir + "/results.csv");
  std::ofstream timeline(dir + "/timeline.csv");
  if (!rows || !timeline) return "cannot write CSV files in " + dir;
  rows << "config,profile,bloom_bits,block_cache_bytes,memtable_bytes,durable_reservations,sync,ttl_seconds,"
          "events,seconds,throughput,p50_us,p99_us,p999_us,reserved,duplicates,in_flight,duplicates_admitted,"
          "expired_readmitted,fast_path_share,disk_reads_per_1000,write_amplification,space_amplification,"
          "bytes_per_live_id,live_ids,sst_bytes,safe,error\n";
  timeline << "config,simulated_seconds,disk_bytes,sst_bytes,live_ids\n";
  for (const Result& r : results) {
    const Configuration& c = r.config;
    rows << absl::StrFormat(
        "%s,%s,%d,%d,%d,%d,%d,%.0f,%d,%.3f,%.0f,%.2f,%.2f,%.2f,%d,%d,%d,%d,%d,%.4f,%.3f,%.3f,%.3f,%.2f,%d,%d,%s,"
        "\"%s\"\n",
        c.Name(), c.profile, c.bloom_bits, c.block_cache_bytes, c.memtable_bytes, c.durable_reservations, c.sync,
        absl::ToDoubleSeconds(workload.ttl), r.events, r.seconds, r.throughput, Micros(r.p50), Micros(r.p99),
        Micros(r.p999), r.reserved, r.duplicates, r.in_flight, r.duplicates_admitted, r.expired_readmitted,
        r.fast_path_share, r.disk_reads_per_1000, r.write_amplification, r.space_amplification, r.bytes_per_live_id,
        r.live_ids, r.sst_bytes, r.safe() ? "yes" : "no", r.error);
    for (const TimelinePoint& p : r.timeline) {
      timeline << absl::StrFormat("%s,%.3f,%d,%d,%d\n", c.Name(), p.simulated_seconds, p.disk_bytes, p.sst_bytes,
                                  p.live_ids);
    }
  }
  return rows && timeline ? "" : "error writing CSV files in " + dir;
}

std::string RenderPlots(const std::string& dir) {
  // What is wrong with the directory is said before any python runs.
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return absl::StrCat("'", dir, "' is not a directory");
  for (const char* csv : {"results.csv", "timeline.csv"}) {
    if (!std::filesystem::is_regular_file(std::filesystem::path(dir) / csv, ec)) {
      return absl::StrCat("'", dir, "' holds no ", csv, ": give the directory an earlier `idemctl tune` wrote");
    }
  }
  // Debian's matplotlib belongs to the system python; a python3 earlier on PATH may lack it.
  const char* python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  // posix_spawn with an argument vector, not popen: no shell, so any directory name (quotes, spaces,
  // $) reaches python as one argument, unchanged. The script comes on python's standard input.
  int fds[2];
  if (pipe(fds) != 0) return absl::StrCat("cannot make a pipe for python: ", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  std::vector<std::string> args = {python, "-", dir};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, python, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[0]);
  if (spawned != 0) {
    close(fds[1]);
    return absl::StrCat("cannot run ", python, ": ", std::strerror(spawned));
  }
  const std::string_view script(kPlotScript);
  for (size_t written = 0; written < script.size();) {
    const ssize_t n = write(fds[1], script.data() + written, script.size() - written);
    if (n <= 0) break;  // python died early: its exit status says why
    written += static_cast<size_t>(n);
  }
  close(fds[1]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  const std::string how = WIFEXITED(status) ? absl::StrCat("exited with status ", WEXITSTATUS(status))
                                            : absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("plots not drawn: ", python, " ", how,
                      " (its message above); it needs matplotlib (Debian: apt-get install python3-matplotlib)");
}

}  // namespace idem::tools
