// One background thread that runs many tasks, each at its own due time: the work of many owners (a
// Kafka member's Processors, one per partition) without a thread each. A task returns when it wants to
// run next; it can be woken early, and removed (after which it never runs again).
//
// Thread safety: every method may be called from any thread, but Remove never from a task (it waits for
// the task's run in progress). Tasks run one at a time, so a slow one delays the others.
#ifndef IDEM_UTIL_SCHEDULER_H_
#define IDEM_UTIL_SCHEDULER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace idem::util {

class Scheduler {
 public:
  // Runs, then says how long until its next run (absl::InfiniteDuration(): not until woken).
  using Task = std::function<absl::Duration()>;

  Scheduler();
  // Waits for a task in progress; tasks still added never run again.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // The task runs first after `first` (InfiniteDuration: when woken). Returns its id.
  uint64_t Add(Task task, absl::Duration first);
  // Runs the task as soon as the thread is free (again, if it is running now). Unknown ids: nothing.
  void Wake(uint64_t id);
  // The task never runs again; a run in progress ends first. Unknown ids: nothing.
  void Remove(uint64_t id);

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Task task;
    Clock::time_point due;
    bool woken = false;    // woken while it ran: it runs again at once
    bool removed = false;  // being removed: never picked again
  };
  static Clock::time_point DueAfter(absl::Duration delay);
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Entry> tasks_;  // guarded by mu_
  uint64_t next_id_ = 1;             // guarded by mu_
  uint64_t running_ = 0;             // guarded by mu_: the id of the task running now, 0 for none
  bool stop_ = false;                // guarded by mu_
  std::thread thread_;               // last: starts after everything it uses is constructed
};

}  // namespace idem::util

#endif  // IDEM_UTIL_SCHEDULER_H_
