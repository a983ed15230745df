#include "util/scheduler.h"

#include <utility>

namespace idem::util {

Scheduler::Scheduler() : thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Scheduler::Clock::time_point Scheduler::DueAfter(absl::Duration delay) {
  if (delay == absl::InfiniteDuration()) return Clock::time_point::max();
  if (delay < absl::ZeroDuration()) delay = absl::ZeroDuration();
  const Clock::time_point now = Clock::now();
  const std::chrono::nanoseconds wait = absl::ToChronoNanoseconds(delay);  // saturates
  // Past the clock's range (a delay of centuries): never, rather than a wrapped time that runs at once.
  if (wait >= Clock::time_point::max() - now) return Clock::time_point::max();
  return now + wait;
}

uint64_t Scheduler::Add(Task task, absl::Duration first) {
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    tasks_[id] = Entry{std::move(task), DueAfter(first)};
  }
  cv_.notify_all();
  return id;
}

void Scheduler::Wake(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    if (running_ == id) {
      it->second.woken = true;
    } else {
      it->second.due = Clock::now();
    }
  }
  cv_.notify_all();
}

void Scheduler::Remove(uint64_t id) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  it->second.removed = true;  // never picked again, even if it runs now and asks to run at once
  cv_.wait(lock, [&] { return running_ != id; });
  tasks_.erase(id);
}

void Scheduler::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    auto next = tasks_.end();
    for (auto it = tasks_.begin(); it != tasks_.end(); ++it) {
      if (it->second.removed) continue;
      if (next == tasks_.end() || it->second.due < next->second.due) next = it;
    }
    if (next == tasks_.end() || next->second.due == Clock::time_point::max()) {
      cv_.wait(lock);
      continue;
    }
    if (next->second.due > Clock::now()) {
      // A copy: Remove may erase the entry while this waits, and the wait reads its deadline again.
      const Clock::time_point due = next->second.due;
      cv_.wait_until(lock, due);
      continue;  // woken, added or removed meanwhile: look again
    }
    const uint64_t id = next->first;
    running_ = id;
    next->second.woken = false;
    // Stable while it runs: map nodes do not move, and Remove waits for the run to end.
    const Task* task = &next->second.task;
    lock.unlock();
    const absl::Duration after = (*task)();
    lock.lock();
    running_ = 0;
    auto it = tasks_.find(id);
    if (it != tasks_.end()) it->second.due = it->second.woken ? Clock::now() : DueAfter(after);
    cv_.notify_all();  // a Remove waiting for this run
  }
}

}  // namespace idem::util
