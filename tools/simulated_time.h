// Simulated time for `idemctl tune`: one clock that idem (leases, deadlines, the expiry filter) and RocksDB
// (file creation times, FIFO's TTL, periodic compaction) both read, so that many TTL periods pass in a
// run of seconds and the two never disagree about how old a record or a file is.
#ifndef IDEM_TOOLS_SIMULATED_TIME_H_
#define IDEM_TOOLS_SIMULATED_TIME_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "idem/clock.h"
#include "rocksdb/env.h"
#include "rocksdb/system_clock.h"

namespace idem::tools {

// Moves only forward: AdvanceTo from several threads keeps the largest value.
class SimulatedClock : public Clock {
 public:
  explicit SimulatedClock(int64_t start_micros) : micros_(start_micros) {}
  absl::Time Now() const override { return absl::FromUnixMicros(micros()); }
  int64_t micros() const { return micros_.load(std::memory_order_acquire); }
  void AdvanceTo(int64_t micros) {
    int64_t current = micros_.load(std::memory_order_relaxed);
    while (current < micros && !micros_.compare_exchange_weak(current, micros, std::memory_order_acq_rel)) {
    }
  }

 private:
  std::atomic<int64_t> micros_;
};

// RocksDB's clock with the wall time (seconds since the epoch) taken from a SimulatedClock. Durations
// (NowMicros/NowNanos, used for statistics and rate limiting) stay real.
class SimulatedRocksClock : public rocksdb::SystemClockWrapper {
 public:
  SimulatedRocksClock(const std::shared_ptr<rocksdb::SystemClock>& real, std::shared_ptr<SimulatedClock> sim)
      : SystemClockWrapper(real), sim_(std::move(sim)) {}
  const char* Name() const override { return "SimulatedRocksClock"; }
  rocksdb::Status GetCurrentTime(int64_t* unix_time) override {
    *unix_time = sim_->micros() / 1000000;
    return rocksdb::Status::OK();
  }

 private:
  std::shared_ptr<SimulatedClock> sim_;
};

// The default Env (real files) with the simulated wall clock.
class SimulatedTimeEnv : public rocksdb::EnvWrapper {
 public:
  explicit SimulatedTimeEnv(std::shared_ptr<SimulatedClock> sim)
      : EnvWrapper(rocksdb::Env::Default()), sim_(std::move(sim)) {
    system_clock_ = std::make_shared<SimulatedRocksClock>(rocksdb::Env::Default()->GetSystemClock(), sim_);
  }
  const char* Name() const override { return "SimulatedTimeEnv"; }
  rocksdb::Status GetCurrentTime(int64_t* unix_time) override {
    *unix_time = sim_->micros() / 1000000;
    return rocksdb::Status::OK();
  }

 private:
  std::shared_ptr<SimulatedClock> sim_;
};

}  // namespace idem::tools

#endif  // IDEM_TOOLS_SIMULATED_TIME_H_
