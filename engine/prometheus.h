// Prometheus text exposition of Stats, for one store (Stats::ToPrometheus) or many labeled ones (a
// PartitionSet: one sample per partition under each metric, as the format wants them together).
//
// Thread safety: functions of their arguments.
#ifndef IDEM_ENGINE_PROMETHEUS_H_
#define IDEM_ENGINE_PROMETHEUS_H_

#include <string>
#include <string_view>
#include <vector>

#include "idem/stats.h"

namespace idem::engine {

struct LabeledStats {
  std::string labels;  // e.g. partition="orders/7" (values escaped with PrometheusLabelValue), or empty
  Stats stats;
};

std::string PrometheusText(const std::vector<LabeledStats>& all);

// `value` escaped for a label value between double quotes.
std::string PrometheusLabelValue(std::string_view value);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_PROMETHEUS_H_
