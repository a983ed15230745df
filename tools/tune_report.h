// What `idemctl tune` prints and writes: the comparison table, CSV files and PNG plots.
#ifndef IDEM_TOOLS_TUNE_REPORT_H_
#define IDEM_TOOLS_TUNE_REPORT_H_

#include <cstdio>
#include <string>
#include <vector>

#include "tools/tune.h"

namespace idem::tools {

enum class Objective { kThroughput, kP99, kSpace };

// Index of the best safe result for `objective`, or -1 if no configuration is safe.
int BestResult(const std::vector<Result>& results, Objective objective);

void PrintTable(std::FILE* out, const Workload& workload, const std::vector<Result>& results, int best);

// results.csv (one row per configuration) and timeline.csv (disk size over simulated time). An error
// message, or empty.
std::string WriteCsv(const std::string& dir, const Workload& workload, const std::vector<Result>& results);

// disk.png and latency.png from the CSV files, drawn by matplotlib (python3-matplotlib). An error message
// (python or matplotlib missing), or empty.
std::string RenderPlots(const std::string& dir);

}  // namespace idem::tools

#endif  // IDEM_TOOLS_TUNE_REPORT_H_
