// One collector of metrics and its formatters: the Prometheus text exposition (HELP and TYPE for every
// family, a family's samples together, summaries with _sum and _count; what `promtool check metrics`
// accepts) and JSON. Store stats (engine/store/stats_metrics.h), a PartitionSet's per-partition stats, the Kafka
// member's and `idemctl stats` all fill one of these instead of writing text by hand.
//
// Thread safety: a Metrics is used by one thread; the functions are pure.
#ifndef IDEM_UTIL_METRICS_H_
#define IDEM_UTIL_METRICS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace idem::util {

enum class MetricType { kCounter, kGauge, kSummary };

class Metrics {
 public:
  // A sample of family `name` (created at its first sample, with `help` and `type`; families keep the
  // order they were created in). `labels`: `k="v",...` with values escaped (LabelValue), or empty;
  // `suffix`: "" or, for a summary, "_sum" / "_count".
  void Add(std::string_view name, std::string_view help, MetricType type, std::string_view labels, uint64_t value,
           std::string_view suffix = "");
  void Add(std::string_view name, std::string_view help, MetricType type, std::string_view labels, double value,
           std::string_view suffix = "");

  std::string Prometheus() const;
  // {"<name>": value} for a family with one unlabeled sample; otherwise
  // {"<name>": [{"labels": {"k": "v"}, "<suffix or value>": value}, ...]}.
  std::string Json() const;

 private:
  struct Sample {
    std::string suffix, labels, value;
  };
  struct Family {
    std::string name, help;
    MetricType type;
    std::vector<Sample> samples;
  };
  void AddFormatted(std::string_view name, std::string_view help, MetricType type, std::string_view labels,
                    std::string value, std::string_view suffix);
  std::vector<Family> families_;
};

// `value` escaped for a label value between double quotes (backslash, quote, newline).
std::string LabelValue(std::string_view value);

}  // namespace idem::util

#endif  // IDEM_UTIL_METRICS_H_
