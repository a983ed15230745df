// RocksDB's per-thread perf counters, off for the duration of an idem call.
//
// RocksDB counts into a thread-local PerfContext on every Get and Write at its default level
// (kEnableCount), about a tenth of an idem cycle, for numbers nobody reads unless they asked. An idem
// call therefore runs with the level at kDisable when the calling thread has RocksDB's default, and
// restores it on return. A thread that chose a level of its own (kEnableTime... to profile, or
// kDisable) keeps it: idem cannot tell an explicit kEnableCount from the default, so profiling through
// idem needs kEnableTimeExceptForMutex or above.
//
// Thread safety: the level is per thread; an instance belongs to the thread that made it.
#ifndef IDEM_ENGINE_STORE_PERF_COUNTERS_H_
#define IDEM_ENGINE_STORE_PERF_COUNTERS_H_

#include "rocksdb/perf_level.h"

namespace idem::engine {

class QuietPerfCounters {
 public:
  QuietPerfCounters() : quieted_(rocksdb::GetPerfLevel() == rocksdb::PerfLevel::kEnableCount) {
    if (quieted_) rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  }
  ~QuietPerfCounters() {
    if (quieted_) rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  }
  QuietPerfCounters(const QuietPerfCounters&) = delete;
  QuietPerfCounters& operator=(const QuietPerfCounters&) = delete;

 private:
  const bool quieted_;
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_PERF_COUNTERS_H_
