// idemctl — inspect and operate an idem store.
//
//   idemctl stats STORE [--format=text|json|prometheus]
//   idemctl get STORE ID [--hex] [--format=text|json]
//   idemctl scan STORE [--state=reserved|done] [--limit=N] [--hex] [--format=text|json]
//   idemctl compact STORE
//   idemctl checkpoint STORE DIR
//   idemctl verify STORE
//   idemctl forget STORE ID [--hex]
//   idemctl recover STORE
//   idemctl tune [--preset=short|standard] [workload and configuration flags]
//
// Read-only commands (stats, get, scan, verify) open the store as a RocksDB secondary instance, so a
// live consumer holding it is not disturbed. compact, checkpoint, forget and recover need the store
// itself and refuse clearly when another process holds it; none of them creates a store: a directory
// that does not hold one (empty, a plain RocksDB) is refused with exit 3 and left as it was. They open
// the caller's own column families with their persisted options (tools/store_families.h), and refuse
// (exit 3) one whose comparator they cannot make. forget and recover refuse a PartitionSet's DB (exit
// 3): a partition changes only through its changelog. Exit codes: 0 fine, 1 the
// command failed or verify found corrupt records, 2 usage, 3 the store cannot be opened (missing, not an idem store,
// held).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/records/record.h"
#include "engine/records/record_scan.h"
#include "engine/records/store_metadata.h"
#include "engine/records/store_time.h"
#include "idem/clock.h"
#include "idem/store.h"
#include "idem/version.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/checkpoint.h"
#include "tools/recover.h"
#include "tools/store_families.h"
#include "tools/tune_command.h"
#include "util/metrics.h"
#include "util/printable.h"

namespace {

using idem::engine::DecodeRecord;
using idem::engine::Record;
using idem::engine::RecordState;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCannotOpen = 3;

// Expiry judged as a store with default options judges it: its clock (idem::SystemClock()).
int64_t NowMicros() { return idem::engine::ToMicros(idem::SystemClock()->Now()); }

// Keys as idemctl prints them: the engine's escaper, whole (or hex with --hex).
std::string Printable(std::string_view bytes, bool hex) { return idem::util::PrintableAll(bytes, hex); }

std::string Times(int64_t deadline_us) {
  const absl::Time t = absl::FromUnixMicros(deadline_us);
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S %Z", t, absl::LocalTimeZone()) + " / " +
         absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

// A secondary (read-only, non-blocking) view of a store's DB.
class ReadOnlyStore {
 public:
  ~ReadOnlyStore() {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db_.reset();
    std::error_code ec;
    if (!secondary_.empty()) std::filesystem::remove_all(secondary_, ec);
  }

  // An error message, or empty on success.
  std::string Open(const std::string& path, const std::string& cf_name) {
    rocksdb::Options options;
    options.max_open_files = -1;
    std::vector<std::string> names;
    if (!std::filesystem::is_directory(path)) return "'" + path + "' is not a directory";
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, path, &names);
    if (!s.ok()) return "'" + path + "' is not a RocksDB store: " + s.ToString();
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}}};
    bool found = false;
    for (const auto& n : names) found |= n == cf_name;
    if (!found) {
      std::string all;
      for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
      return "'" + path + "' has no column family '" + cf_name + "' (it has: " + all + "); not an idem store?";
    }
    cfs.emplace_back(cf_name, rocksdb::ColumnFamilyOptions());
    secondary_ = (std::filesystem::temp_directory_path() / ("idemctl-" + std::to_string(getpid()))).string();
    rocksdb::DB* raw = nullptr;
    s = rocksdb::DB::OpenAsSecondary(options, path, secondary_, cfs, &handles_, &raw);
    if (!s.ok()) return "cannot open '" + path + "': " + s.ToString();
    db_.reset(raw);
    db_->TryCatchUpWithPrimary().PermitUncheckedError();
    std::string meta;
    if (db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), idem::engine::MetadataKey(cf_name), &meta).ok()) {
      absl::StatusOr<idem::engine::StoreMetadata> m = idem::engine::DecodeMetadata(meta);
      if (!m.ok()) return "'" + path + "': " + std::string(m.status().message());
      layout_ = m->layout;
    }
    return {};
  }

  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* cf() const { return handles_[1]; }
  // How the store's IDs are laid out in keys (plain when it has no metadata: a store from before).
  idem::engine::KeyLayout layout() const { return layout_; }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::string secondary_;
  idem::engine::KeyLayout layout_ = idem::engine::KeyLayout::kPlain;
};

struct Census {
  uint64_t reserved = 0, done = 0, expired = 0, corrupt = 0, result_bytes = 0;
  std::optional<uint64_t> token_high_water;
  std::vector<std::string> corrupt_keys;
};

Census Count(const ReadOnlyStore& store, bool hex_keys) {
  Census c;
  std::string meta;
  if (store.db()
          ->Get(rocksdb::ReadOptions(), store.db()->DefaultColumnFamily(),
                idem::engine::MetadataKey(store.cf()->GetName()), &meta)
          .ok()) {
    absl::StatusOr<idem::engine::StoreMetadata> m = idem::engine::DecodeMetadata(meta);
    if (m.ok()) c.token_high_water = m->token_high_water;
  }
  if (!c.token_high_water) {
    // A store from before the metadata moved kept its token mark under the empty key.
    if (store.db()->Get(rocksdb::ReadOptions(), store.cf(), rocksdb::Slice(), &meta).ok()) {
      absl::StatusOr<uint64_t> hw = idem::engine::DecodeMeta(meta);
      if (hw.ok()) c.token_high_water = *hw;
    }
  }
  idem::engine::ScanRecords(store.db(), store.cf(), store.layout(), NowMicros(),
                            [&](const idem::engine::ScannedRecord& r) {
                              if (!r.record.ok()) {
                                c.corrupt++;
                                c.corrupt_keys.push_back(Printable(r.id, hex_keys));
                              } else if (r.expired) {
                                c.expired++;
                              } else if (r.record->state == RecordState::kDone) {
                                c.done++;
                              } else {
                                c.reserved++;
                              }
                              if (r.record.ok()) c.result_bytes += r.record->result.size();
                              return true;
                            })
      .IgnoreError();  // a read error shows as fewer records; verify and get say more
  return c;
}

int Stats(const ReadOnlyStore& store, const std::string& format) {
  const Census c = Count(store, true);
  rocksdb::ColumnFamilyMetaData meta;
  store.db()->GetColumnFamilyMetaData(store.cf(), &meta);
  rocksdb::TablePropertiesCollection tables;
  store.db()->GetPropertiesOfAllTables(store.cf(), &tables).PermitUncheckedError();
  uint64_t filter_bytes = 0, entries = 0;
  for (const auto& [name, p] : tables) {
    filter_bytes += p->filter_size;
    entries += p->num_entries;
  }
  // Filter usefulness from the files alone: the false-positive rate a filter of this many bits per key
  // gives (0.6185^bits for an optimal Bloom; Ribbon is within a few percent), i.e. the share of lookups of
  // never-seen IDs that still read a data block. What the filters actually saved is counted by the
  // running process (Stats::fast_path_hits, idem_fast_path_hits_total), which a tool outside cannot see.
  const double bits_per_entry = entries ? 8.0 * static_cast<double>(filter_bytes) / static_cast<double>(entries) : 0;
  const double false_positive = bits_per_entry > 0 ? std::pow(0.6185, bits_per_entry) : 1.0;
  const uint64_t live = c.reserved + c.done;
  const double per_id = live ? static_cast<double>(meta.size) / static_cast<double>(live) : 0.0;
  if (format == "json") {
    std::printf("{\"records\":{\"reserved\":%llu,\"done\":%llu,\"expired_not_removed\":%llu,\"corrupt\":%llu},",
                (unsigned long long)c.reserved, (unsigned long long)c.done, (unsigned long long)c.expired,
                (unsigned long long)c.corrupt);
    std::printf("\"sst_bytes\":%llu,\"files\":%zu,\"bytes_per_live_id\":%.1f,\"filter_bytes\":%llu,\"levels\":[",
                (unsigned long long)meta.size, static_cast<size_t>(meta.file_count), per_id,
                (unsigned long long)filter_bytes);
    bool first = true;
    for (const auto& level : meta.levels) {
      if (level.files.empty()) continue;
      std::printf("%s{\"level\":%d,\"files\":%zu,\"bytes\":%llu}", first ? "" : ",", level.level, level.files.size(),
                  (unsigned long long)level.size);
      first = false;
    }
    std::printf("],\"filter_bits_per_entry\":%.2f,\"filter_false_positive_rate\":%.5f,\"token_high_water\":%llu}\n",
                bits_per_entry, false_positive, (unsigned long long)c.token_high_water.value_or(0));
    return 0;
  }
  if (format == "prometheus") {
    using idem::util::MetricType;
    idem::util::Metrics metrics;
    const char* records_help =
        "Records in the store's column family, by state (a census of the files, not of a process).";
    metrics.Add("idem_store_records", records_help, MetricType::kGauge, "state=\"reserved\"", c.reserved);
    metrics.Add("idem_store_records", records_help, MetricType::kGauge, "state=\"done\"", c.done);
    metrics.Add("idem_store_records", records_help, MetricType::kGauge, "state=\"expired_not_removed\"", c.expired);
    metrics.Add("idem_store_records", records_help, MetricType::kGauge, "state=\"corrupt\"", c.corrupt);
    for (const auto& level : meta.levels) {
      metrics.Add("idem_store_sst_bytes", "Bytes of SST files, by LSM level.", MetricType::kGauge,
                  absl::StrCat("level=\"", level.level, "\""), static_cast<uint64_t>(level.size));
    }
    metrics.Add("idem_store_bytes_per_live_id", "SST bytes per live (reserved or done) ID.", MetricType::kGauge, "",
                per_id);
    metrics.Add("idem_store_filter_bytes", "Bytes of the SST files' filters.", MetricType::kGauge, "", filter_bytes);
    metrics.Add("idem_store_filter_false_positive_rate",
                "False-positive rate the filters' bits per entry give (lookups of never-seen IDs that read a block).",
                MetricType::kGauge, "", false_positive);
    metrics.Add("idem_store_token_high_water", "The store's persisted token high-water mark.", MetricType::kGauge, "",
                c.token_high_water.value_or(0));
    std::fputs(metrics.Prometheus().c_str(), stdout);
    return 0;
  }
  std::printf("records:  %llu done, %llu reserved, %llu expired (not yet removed by compaction), %llu corrupt\n",
              (unsigned long long)c.done, (unsigned long long)c.reserved, (unsigned long long)c.expired,
              (unsigned long long)c.corrupt);
  std::printf("disk:     %llu bytes in %zu SST files, %.1f bytes per live ID, %llu result bytes\n",
              (unsigned long long)meta.size, static_cast<size_t>(meta.file_count), per_id,
              (unsigned long long)c.result_bytes);
  for (const auto& level : meta.levels) {
    if (level.files.empty()) continue;
    std::printf("  L%d: %zu files, %llu bytes\n", level.level, level.files.size(), (unsigned long long)level.size);
    for (const auto& f : level.files) {
      std::printf("      %s %llu bytes, %llu entries\n", f.name.c_str(), (unsigned long long)f.size,
                  (unsigned long long)f.num_entries);
    }
  }
  std::printf(
      "filters:  %llu bytes for %llu entries (%.2f bits/entry): ~%.2f%% false positives, so ~%.1f%% of "
      "lookups of never-seen IDs are answered without a data-block read (per file probed)\n",
      (unsigned long long)filter_bytes, (unsigned long long)entries, bits_per_entry, 100 * false_positive,
      100 * (1 - false_positive));
  std::printf("tokens:   high-water mark %llu\n", (unsigned long long)c.token_high_water.value_or(0));
  std::printf("(counters of the running process, e.g. fast-path hits, are in Store::GetStats / ToPrometheus)\n");
  return 0;
}

// The ID as given on the command line, or decoded from hex with --hex; nullopt (after saying why) when
// it is not hex.
std::optional<std::string> KeyFromArgument(const std::string& id, bool hex) {
  if (!hex) return id;
  if (id.size() % 2 != 0 || id.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    std::fprintf(stderr, "idemctl: '%s' is not hex\n", id.c_str());
    return std::nullopt;
  }
  return absl::HexStringToBytes(id);
}

void PrintRecord(std::string_view key, const Record& r, bool hex) {
  const bool expired = r.deadline_us <= NowMicros();
  std::printf("%s  %s%s  token %llu  %s %s  result %zu bytes\n", Printable(key, hex).c_str(),
              r.state == RecordState::kDone ? "done" : "reserved", expired ? " (expired)" : "",
              (unsigned long long)r.token, r.state == RecordState::kDone ? "retained until" : "lease until",
              Times(r.deadline_us).c_str(), r.result.size());
}

// One record as a JSON object (a line of `scan --format=json`): bytes of the ID and the result escaped
// by JsonBytes (each \u00NN one byte), the deadline as RFC 3339 UTC and as Unix microseconds.
std::string RecordJson(std::string_view key, const absl::StatusOr<Record>& r) {
  using idem::util::JsonBytes;
  if (!r.ok()) {
    return absl::StrCat("{\"id\":", JsonBytes(key), ",\"corrupt\":", JsonBytes(std::string(r.status().message())), "}");
  }
  const bool expired = r->deadline_us <= NowMicros();
  return absl::StrCat(
      "{\"id\":", JsonBytes(key), ",\"state\":\"", r->state == RecordState::kDone ? "done" : "reserved",
      "\",\"expired\":", expired ? "true" : "false", ",\"token\":", r->token, ",\"deadline\":\"",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(r->deadline_us), absl::UTCTimeZone()),
      "\",\"deadline_unix_us\":", r->deadline_us,
      ",\"fingerprint\":", r->fingerprint ? absl::StrCat(*r->fingerprint) : std::string("null"),
      ",\"result\":", JsonBytes(std::string(r->result)), "}");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"idemctl: inspect and operate an idem store (a RocksDB directory)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("idemctl ") + idem::Version());
  std::string path, cf = "idem";
  app.add_option("--column-family", cf, "the store's column family")->capture_default_str();

  auto* stats = app.add_subcommand("stats", "records by state, disk per level and file, bytes per ID, filters");
  std::string format = "text";
  stats->add_option("store", path, "store directory")->required();
  stats->add_option("--format", format, "text, json or prometheus")
      ->check(CLI::IsMember({"text", "json", "prometheus"}))
      ->capture_default_str();

  auto* get = app.add_subcommand("get", "one record, decoded");
  std::string id;
  bool hex = false;
  get->add_option("store", path, "store directory")->required();
  get->add_option("id", id, "event ID (hex digits with --hex)")->required();
  get->add_flag("--hex", hex, "the ID is given in hex; keys are printed in hex");
  std::string record_format = "text";
  get->add_option("--format", record_format, "text, or json (one object, the result included)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  auto* scan = app.add_subcommand("scan", "records in key order, decoded");
  std::string state;
  long limit = 100;
  scan->add_option("store", path, "store directory")->required();
  scan->add_option("--state", state, "only reserved or done records")->check(CLI::IsMember({"reserved", "done"}));
  scan->add_option("--limit", limit, "at most this many records")->check(CLI::PositiveNumber)->capture_default_str();
  scan->add_flag("--hex", hex, "print keys in hex");
  scan->add_option("--format", record_format, "text, or json (one object per line, results included)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  auto* compact = app.add_subcommand("compact", "remove expired records from disk now (needs the store)");
  compact->add_option("store", path, "store directory")->required();

  auto* checkpoint = app.add_subcommand("checkpoint", "a consistent copy of the store in DIR (needs the store)");
  std::string target;
  checkpoint->add_option("store", path, "store directory")->required();
  checkpoint->add_option("dir", target, "new directory for the copy")->required();

  auto* verify = app.add_subcommand("verify", "decode every record; exit 1 if any is corrupt");
  verify->add_option("store", path, "store directory")->required();
  verify->add_flag("--hex", hex, "print corrupt keys in hex");

  auto* forget =
      app.add_subcommand("forget",
                         "delete one record on purpose, e.g. a corrupt one (needs the store). The ID is new again: "
                         "a redelivery of a committed event will be applied again");
  forget->add_option("store", path, "store directory")->required();
  forget->add_option("id", id, "event ID (hex digits with --hex)")->required();
  forget->add_flag("--hex", hex, "the ID is given in hex");

  auto* recover =
      app.add_subcommand("recover",
                         "open a store whose WAL is corrupt before its tail, dropping what follows the damage, and "
                         "list the commits that were forgotten (needs the store)");
  recover->add_option("store", path, "store directory")->required();
  recover->add_flag("--hex", hex, "print IDs in hex");

  idem::tools::TuneFlags tune_flags;
  auto* tune = idem::tools::AddTuneCommand(app, &tune_flags);

  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
    }
    if (!known) {
      std::fprintf(stderr, "idemctl: unknown command '%s'\nRun 'idemctl --help' for the commands.\n", argv[1]);
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help or --version: printed on stdout, exit 0
  } catch (const CLI::ParseError& e) {
    // Usage errors: the message on stderr and exit 2, whatever CLI11's own code for the kind of error.
    std::fprintf(stderr, "idemctl: %s\nRun 'idemctl --help' (or 'idemctl COMMAND --help') for usage.\n", e.what());
    return kExitUsage;
  }
  if (tune->parsed()) return idem::tools::RunTune(tune_flags);

  if (recover->parsed()) {
    if (!std::filesystem::is_directory(path)) {
      std::fprintf(stderr, "idemctl: '%s' is not a store directory\n", path.c_str());
      return kExitCannotOpen;
    }
    if (std::string refusal = idem::tools::PartitionSetRefusal(path, "recover"); !refusal.empty()) {
      std::fprintf(stderr, "idemctl: %s\n", refusal.c_str());
      return kExitCannotOpen;
    }
    return idem::tools::Recover(path, cf, hex);
  }
  if (compact->parsed() || checkpoint->parsed() || forget->parsed()) {
    idem::Options options;
    options.column_family = cf;
    options.maintenance_interval = absl::ZeroDuration();
    options.create_if_missing = false;  // an operator's tool never creates a store
    options.min_free_disk_bytes = 0;    // compacting is how an operator frees space
    if (!std::filesystem::is_directory(path)) {
      std::fprintf(stderr, "idemctl: '%s' is not a store directory\n", path.c_str());
      return kExitCannotOpen;
    }
    if (forget->parsed()) {
      if (std::string refusal = idem::tools::PartitionSetRefusal(path, "forget"); !refusal.empty()) {
        std::fprintf(stderr, "idemctl: %s\n", refusal.c_str());
        return kExitCannotOpen;
      }
    }
    {
      // Checked read-only first, so that nothing at all is written to a directory that is not a store.
      ReadOnlyStore probe;
      if (std::string error = probe.Open(path, cf); !error.empty()) {
        std::fprintf(stderr, "idemctl: %s\n", error.c_str());
        return kExitCannotOpen;
      }
      if (!Count(probe, false).token_high_water) {
        std::fprintf(stderr,
                     "idemctl: '%s' has a column family '%s' but no idem store metadata; not an idem "
                     "store\n",
                     path.c_str(), cf.c_str());
        return kExitCannotOpen;
      }
    }
    // Every family of the DB must be opened, the caller's with their own comparators (store_families.h).
    absl::StatusOr<std::vector<idem::ColumnFamilySpec>> callers = idem::tools::CallerFamilies(path, cf);
    if (!callers.ok()) {
      std::fprintf(stderr, "idemctl: %s\n", std::string(callers.status().message()).c_str());
      return kExitCannotOpen;
    }
    auto store = idem::Store::Open(options, path, *callers);
    if (!store.ok()) {
      if (std::string problem = idem::tools::ComparatorProblem(path, *callers); !problem.empty()) {
        std::fprintf(stderr, "idemctl: %s\n", problem.c_str());
        return kExitCannotOpen;
      }
      std::fprintf(stderr, "idemctl: %s\n", std::string(store.status().message()).c_str());
      if (store.status().code() == absl::StatusCode::kUnavailable) {
        std::fprintf(stderr,
                     "idemctl: stop the process that holds it, or call Store::CompactExpired / use "
                     "RocksDB's Checkpoint from inside it\n");
      }
      return kExitCannotOpen;
    }
    if (forget->parsed()) {
      const std::optional<std::string> key = KeyFromArgument(id, hex);
      if (!key) return 2;
      absl::Status s = (*store)->Forget(*key);
      if (!s.ok()) {
        std::fprintf(stderr, "idemctl: %s\n", std::string(s.message()).c_str());
        return kExitFailed;
      }
      std::printf("forgot %s: it is new again; its next delivery will be processed (and applied) as new\n",
                  Printable(*key, hex).c_str());
      return 0;
    }
    if (compact->parsed()) {
      uint64_t before = 0, after = 0;
      (*store)->db()->GetIntProperty((*store)->column_family(), "rocksdb.live-sst-files-size", &before);
      if (absl::Status s = (*store)->CompactExpired(); !s.ok()) {
        std::fprintf(stderr, "idemctl: %s\n", s.ToString().c_str());
        return kExitFailed;
      }
      (*store)->db()->GetIntProperty((*store)->column_family(), "rocksdb.live-sst-files-size", &after);
      std::printf("compacted: %llu expired records removed, SST bytes %llu -> %llu\n",
                  (unsigned long long)(*store)->GetStats().expired_removed, (unsigned long long)before,
                  (unsigned long long)after);
      return 0;
    }
    rocksdb::Checkpoint* raw = nullptr;
    rocksdb::Status s = rocksdb::Checkpoint::Create((*store)->db(), &raw);
    std::unique_ptr<rocksdb::Checkpoint> cp(raw);
    if (s.ok()) s = cp->CreateCheckpoint(target);
    if (!s.ok()) {
      std::fprintf(stderr, "idemctl: checkpoint: %s\n", s.ToString().c_str());
      return kExitFailed;
    }
    std::printf("checkpoint written to %s\n", target.c_str());
    return 0;
  }

  ReadOnlyStore store;
  if (std::string error = store.Open(path, cf); !error.empty()) {
    std::fprintf(stderr, "idemctl: %s\n", error.c_str());
    return kExitCannotOpen;
  }
  if (stats->parsed()) return Stats(store, format);
  if (get->parsed()) {
    const std::optional<std::string> parsed = KeyFromArgument(id, hex);
    if (!parsed) return 2;
    const std::string& key = *parsed;
    std::string value;
    rocksdb::Status s = key.empty() ? rocksdb::Status::NotFound()
                                    : store.db()->Get(rocksdb::ReadOptions(), store.cf(),
                                                      idem::engine::RecordKey(store.layout(), key).slice(), &value);
    if (s.IsNotFound() || key.empty()) {
      std::fprintf(stderr, "%s: no record (never seen, released, or expired and compacted away)\n",
                   Printable(key, hex).c_str());
      return kExitFailed;
    }
    absl::StatusOr<Record> r = DecodeRecord(value);
    if (!r.ok()) {
      std::fprintf(stderr, "%s: CORRUPT (%s)\n", Printable(key, hex).c_str(),
                   std::string(r.status().message()).c_str());
      return kExitFailed;
    }
    if (record_format == "json") {
      std::printf("%s\n", RecordJson(key, r).c_str());
    } else {
      PrintRecord(key, *r, hex);
    }
    return 0;
  }
  if (scan->parsed()) {
    long shown = 0;
    bool stopped_at_limit = false;
    const absl::Status scanned = idem::engine::ScanRecords(
        store.db(), store.cf(), store.layout(), NowMicros(), [&](const idem::engine::ScannedRecord& r) {
          if (shown >= limit) {
            stopped_at_limit = true;
            return false;
          }
          if (!r.record.ok()) {
            if (record_format == "json") {
              std::printf("%s\n", RecordJson(r.id, r.record).c_str());
            } else {
              std::printf("%s  CORRUPT (%s)\n", Printable(r.id, hex).c_str(),
                          std::string(r.record.status().message()).c_str());
            }
            ++shown;
            return true;
          }
          if (state == "reserved" && r.record->state != RecordState::kReserved) return true;
          if (state == "done" && r.record->state != RecordState::kDone) return true;
          if (record_format == "json") {
            std::printf("%s\n", RecordJson(r.id, r.record).c_str());
          } else {
            PrintRecord(r.id, *r.record, hex);
          }
          ++shown;
          return true;
        });
    if (!scanned.ok()) {
      std::fprintf(stderr, "idemctl: %s\n", std::string(scanned.message()).c_str());
      return kExitFailed;
    }
    if (stopped_at_limit) {
      std::fprintf(stderr, "idemctl: stopped at --limit=%ld; more records follow\n", limit);
    }
    return 0;
  }
  // verify
  const Census c = Count(store, hex);
  for (const auto& key : c.corrupt_keys) std::printf("corrupt record: %s\n", key.c_str());
  std::printf("%llu records checked: %llu corrupt\n", (unsigned long long)(c.reserved + c.done + c.expired + c.corrupt),
              (unsigned long long)c.corrupt);
  return c.corrupt == 0 ? 0 : kExitFailed;
}
