#include "engine/metrics.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/printable.h"

namespace idem::engine {

namespace {

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kSummary: return "summary";
  }
  return "untyped";
}

std::string JsonString(std::string_view s) { return JsonBytes(s); }

// k="v",k2="v2" (values escaped as LabelValue does) as a JSON object.
std::string LabelsAsJson(std::string_view labels) {
  std::string out = "{";
  size_t i = 0;
  bool first = true;
  while (i < labels.size()) {
    const size_t eq = labels.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= labels.size() || labels[eq + 1] != '"') break;
    std::string value;
    size_t j = eq + 2;
    for (; j < labels.size() && labels[j] != '"'; ++j) {
      if (labels[j] == '\\' && j + 1 < labels.size()) {
        ++j;
        value.push_back(labels[j] == 'n' ? '\n' : labels[j]);
      } else {
        value.push_back(labels[j]);
      }
    }
    absl::StrAppend(&out, first ? "" : ",", JsonString(labels.substr(i, eq - i)), ":", JsonString(value));
    first = false;
    i = j + 1;
    if (i < labels.size() && labels[i] == ',') ++i;
  }
  return out + "}";
}

}  // namespace

std::string LabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void Metrics::AddFormatted(std::string_view name, std::string_view help, MetricType type, std::string_view labels,
                           std::string value, std::string_view suffix) {
  Family* family = nullptr;
  for (Family& f : families_) {
    if (f.name == name) family = &f;
  }
  if (family == nullptr) {
    families_.push_back(Family{std::string(name), std::string(help), type, {}});
    family = &families_.back();
  }
  family->samples.push_back(Sample{std::string(suffix), std::string(labels), std::move(value)});
}

void Metrics::Add(std::string_view name, std::string_view help, MetricType type, std::string_view labels,
                  uint64_t value, std::string_view suffix) {
  AddFormatted(name, help, type, labels, absl::StrCat(value), suffix);
}

void Metrics::Add(std::string_view name, std::string_view help, MetricType type, std::string_view labels, double value,
                  std::string_view suffix) {
  AddFormatted(name, help, type, labels, absl::StrFormat("%.9g", value), suffix);
}

void Metrics::AddStats(const Stats& s, std::string_view labels) {
  auto counter = [&](const char* name, const char* help, uint64_t value) {
    Add(name, help, MetricType::kCounter, labels, value);
  };
  counter("idem_reserved_total", "Reserve verdicts kReserved.", s.reserved);
  counter("idem_duplicate_total", "Reserve verdicts kDuplicate.", s.duplicate);
  counter("idem_in_flight_total", "Reserve verdicts kInFlight.", s.in_flight);
  counter("idem_conflicts_total", "Reserve verdicts kConflict (an ID reused with another payload).", s.conflicts);
  counter("idem_waits_total", "Reserve calls that waited for an in-flight holder.", s.waits);
  counter("idem_reopens_total", "Recoveries that reopened the DB.", s.reopens);
  counter("idem_takeovers_total", "Reservations that replaced an expired lease.", s.takeovers);
  counter("idem_committed_total", "Successful commits.", s.committed);
  counter("idem_released_total", "Successful releases.", s.released);
  counter("idem_extended_total", "Successful lease extensions.", s.extended);
  counter("idem_lease_lost_total", "Commit/Extend/Release refused because the token lost the lease.", s.lease_lost);
  counter("idem_fenced_total", "Commit/Extend/Release refused because the token is below the ownership floor.",
          s.fenced);
  counter("idem_fast_path_hits_total", "Reserve lookups answered absent without disk I/O.", s.fast_path_hits);
  counter("idem_expired_removed_total", "Records removed by the expiry compaction filter.", s.expired_removed);
  counter("idem_corrupt_records_total", "Stored records that failed to decode.", s.corrupt_records);
  counter("idem_storage_errors_total", "Calls failed by a RocksDB error.", s.storage_errors);
  counter("idem_disk_refusals_total", "Writes refused because free disk space was below min_free_disk_bytes.",
          s.disk_refusals);
  Add("idem_disk_free_bytes", "Free bytes last measured on the store's file system.", MetricType::kGauge, labels,
      s.disk_free_bytes);
  auto summary = [&](const char* name, const char* help, const LatencySummary& l) {
    const std::string sep = labels.empty() ? std::string() : std::string(labels) + ",";
    Add(name, help, MetricType::kSummary, absl::StrCat(sep, "quantile=\"0.5\""), absl::ToDoubleSeconds(l.p50));
    Add(name, help, MetricType::kSummary, absl::StrCat(sep, "quantile=\"0.99\""), absl::ToDoubleSeconds(l.p99));
    Add(name, help, MetricType::kSummary, absl::StrCat(sep, "quantile=\"0.999\""), absl::ToDoubleSeconds(l.p999));
    Add(name, help, MetricType::kSummary, labels, absl::ToDoubleSeconds(l.sum), "_sum");
    Add(name, help, MetricType::kSummary, labels, l.count, "_count");
  };
  summary("idem_reserve_seconds", "Latency of Reserve and ReserveBatch calls.", s.reserve_latency);
  summary("idem_commit_seconds", "Latency of Commit and CommitBatch calls.", s.commit_latency);
}

std::string Metrics::Prometheus() const {
  std::string out;
  for (const Family& f : families_) {
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", TypeName(f.type), "\n");
    for (const Sample& s : f.samples) {
      absl::StrAppend(&out, f.name, s.suffix, s.labels.empty() ? "" : absl::StrCat("{", s.labels, "}"), " ", s.value,
                      "\n");
    }
  }
  return out;
}

std::string Metrics::Json() const {
  std::string out = "{";
  for (size_t i = 0; i < families_.size(); ++i) {
    const Family& f = families_[i];
    absl::StrAppend(&out, i ? "," : "", JsonString(f.name), ":");
    if (f.samples.size() == 1 && f.samples[0].labels.empty() && f.samples[0].suffix.empty()) {
      out += f.samples[0].value;
      continue;
    }
    out += "[";
    for (size_t k = 0; k < f.samples.size(); ++k) {
      const Sample& s = f.samples[k];
      absl::StrAppend(&out, k ? "," : "", "{\"labels\":", LabelsAsJson(s.labels), ",",
                      JsonString(s.suffix.empty() ? "value" : s.suffix.substr(1)), ":", s.value, "}");
    }
    out += "]";
  }
  return out + "}";
}

}  // namespace idem::engine
