// A background thread that runs a task every `interval` until destroyed. Stopping wakes it at once, so
// destruction never waits for a full interval.
#ifndef IDEM_UTIL_PERIODIC_H_
#define IDEM_UTIL_PERIODIC_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace idem::util {

class Periodic {
 public:
  Periodic(absl::Duration interval, std::function<void()> task)
      : interval_(absl::ToChronoNanoseconds(interval)), task_(std::move(task)), thread_([this] { Loop(); }) {}
  ~Periodic() { Stop(); }
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, interval_, [this] { return stop_; })) return;
      }
      task_();
    }
  }

  const std::chrono::nanoseconds interval_;
  const std::function<void()> task_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  std::thread thread_;  // last: starts after everything it uses is constructed
};

}  // namespace idem::util

#endif  // IDEM_UTIL_PERIODIC_H_
