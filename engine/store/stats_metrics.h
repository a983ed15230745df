// A Store's Stats as metrics: the idem_* families that Stats::ToPrometheus, a PartitionSet's
// per-partition exposition and `idemctl stats` share.
#ifndef IDEM_ENGINE_STORE_STATS_METRICS_H_
#define IDEM_ENGINE_STORE_STATS_METRICS_H_

#include <string_view>

#include "idem/stats.h"
#include "util/metrics.h"

namespace idem::engine {

// Every field of `stats`, as the idem_* families, with `labels` on each sample. Thread-compatible.
void AddStoreStats(const Stats& stats, std::string_view labels, util::Metrics& metrics);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_STATS_METRICS_H_
