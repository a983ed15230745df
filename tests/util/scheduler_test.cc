// util::Scheduler: many tasks on one thread — a dormant task runs when woken, a task runs again when it
// asks to, a wake during a run makes it run again, and Remove waits for a run in progress and is final.
#include "util/scheduler.h"

#include <atomic>
#include <thread>

#include "tests/support/test_util.h"

namespace idem::util {
namespace {

using ::idem::testing::WaitFor;

TEST(SchedulerTest, ADormantTaskRunsOnlyWhenWoken) {
  Scheduler scheduler;
  std::atomic<int> runs{0};
  const uint64_t id = scheduler.Add(
      [&] {
        ++runs;
        return absl::InfiniteDuration();
      },
      absl::InfiniteDuration());
  // Another task that runs steadily: the dormant one is looked at many times and never runs.
  std::atomic<int> ticks{0};
  const uint64_t ticker = scheduler.Add(
      [&] {
        ++ticks;
        return absl::ZeroDuration();
      },
      absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return ticks.load() > 100; }));
  EXPECT_EQ(runs.load(), 0);
  scheduler.Wake(id);
  ASSERT_TRUE(WaitFor([&] { return runs.load() == 1; }));
  scheduler.Wake(id);
  ASSERT_TRUE(WaitFor([&] { return runs.load() == 2; }));
  scheduler.Remove(ticker);
  scheduler.Remove(id);
  scheduler.Wake(id);  // unknown now: nothing
}

TEST(SchedulerTest, ADelayPastTheClocksRangeIsNeverNotAtOnce) {
  Scheduler scheduler;
  std::atomic<int> far{0}, ticks{0};
  scheduler.Add(
      [&] {
        ++far;
        return absl::Hours(1e7);  // ~1 100 years: past steady_clock's range from now
      },
      absl::Hours(1e7));
  scheduler.Add(
      [&] {
        ++ticks;
        return absl::ZeroDuration();
      },
      absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return ticks.load() > 100; }));
  EXPECT_EQ(far.load(), 0);
}

TEST(SchedulerTest, ATaskThatAsksAgainRunsAgainAndManyShareTheThread) {
  Scheduler scheduler;
  std::atomic<int> a{0}, b{0};
  std::atomic<std::thread::id> a_thread{}, b_thread{};
  scheduler.Add(
      [&] {
        a_thread = std::this_thread::get_id();
        ++a;
        return absl::Milliseconds(1);
      },
      absl::ZeroDuration());
  scheduler.Add(
      [&] {
        b_thread = std::this_thread::get_id();
        ++b;
        return absl::Milliseconds(1);
      },
      absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return a.load() >= 3 && b.load() >= 3; }));
  EXPECT_EQ(a_thread.load(), b_thread.load());
  EXPECT_NE(a_thread.load(), std::this_thread::get_id());
}

TEST(SchedulerTest, AWakeDuringARunMakesItRunAgain) {
  Scheduler scheduler;
  std::atomic<int> runs{0};
  std::atomic<bool> inside{false}, release{false};
  const uint64_t id = scheduler.Add(
      [&] {
        if (++runs == 1) {
          inside = true;
          while (!release.load()) std::this_thread::yield();
        }
        return absl::InfiniteDuration();
      },
      absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return inside.load(); }));
  scheduler.Wake(id);  // while it runs: it would otherwise sleep until woken again
  release = true;
  ASSERT_TRUE(WaitFor([&] { return runs.load() == 2; }));
}

TEST(SchedulerTest, RemoveWaitsForTheRunInProgressAndIsFinal) {
  Scheduler scheduler;
  std::atomic<bool> inside{false}, release{false}, finished{false};
  std::atomic<int> runs{0};
  const uint64_t id = scheduler.Add(
      [&] {
        ++runs;
        inside = true;
        while (!release.load()) std::this_thread::yield();
        finished = true;
        return absl::ZeroDuration();  // would run again at once
      },
      absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return inside.load(); }));
  std::atomic<bool> removed{false};
  std::thread remover([&] {
    scheduler.Remove(id);
    removed = true;
  });
  release = true;
  remover.join();
  EXPECT_TRUE(finished.load()) << "Remove returned before the run ended";
  const int after = runs.load();
  // A later task runs; the removed one never again.
  std::atomic<bool> later{false};
  scheduler.Add(
      [&] {
        later = true;
        return absl::InfiniteDuration();
      },
      absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return later.load(); }));
  EXPECT_EQ(runs.load(), after);
  EXPECT_TRUE(removed.load());
}

}  // namespace
}  // namespace idem::util
