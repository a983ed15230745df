#include "idem/stats.h"

#include "engine/metrics.h"

namespace idem {

std::string Stats::ToPrometheus() const {
  engine::Metrics metrics;
  metrics.AddStats(*this, "");
  return metrics.Prometheus();
}

std::string Stats::ToJson() const {
  engine::Metrics metrics;
  metrics.AddStats(*this, "");
  return metrics.Json();
}

}  // namespace idem
