// Small helpers shared by the tests (the idem_test_support library): status matchers (Debian's abseil
// 20220623 predates abseil's own), a fake clock, scratch directories and the options of a store the
// test drives by hand.
#ifndef IDEM_TESTS_SUPPORT_TEST_UTIL_H_
#define IDEM_TESTS_SUPPORT_TEST_UTIL_H_

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <unistd.h>

#include <mutex>
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/records/record_key.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "idem/clock.h"
#include "idem/options.h"
#include "tests/support/fake_clock.h"

namespace idem::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }

// The key under which a store made by this release keeps `id` (engine/record_key.h), for tests that
// write or read the records column family directly.
inline std::string StoredKey(std::string_view id) {
  return std::string(engine::RecordKey(engine::KeyLayout::kHashed, id).view());
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  if (!status.ok()) *result_listener << status.ToString();
  return status.ok();
}

MATCHER_P(StatusIs, code, "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << status.ToString();
  return status.code() == code;
}

#define IDEM_ASSERT_OK_AND_ASSIGN(lhs, expr)                                \
  auto IDEM_CONCAT(_status_or_, __LINE__) = (expr);                         \
  ASSERT_THAT(IDEM_CONCAT(_status_or_, __LINE__), ::idem::testing::IsOk()); \
  lhs = std::move(*IDEM_CONCAT(_status_or_, __LINE__))
#define IDEM_CONCAT_INNER(a, b) a##b
#define IDEM_CONCAT(a, b) IDEM_CONCAT_INNER(a, b)

// A fresh directory under the test's temp dir, removed at destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  std::string path() const { return path_.string(); }
  std::string Sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Store options whose maintenance thread never runs on its own (maintenance_interval zero: the test
// drives expiry and compaction), on `clock` when one is given: the preamble most store tests open with.
Options ManualOptions(std::shared_ptr<Clock> clock = nullptr);

// The threads of this process now (/proc/self/status), or -1.
int ThreadCount();

// Polls `condition` until it holds or `limit` of real time passes. For background work (maintenance
// thread) whose trigger is the fake clock: the wait bounds the test, it never decides the outcome.
template <typename Condition>
bool WaitFor(Condition condition, absl::Duration limit = absl::Seconds(20)) {
  const absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

}  // namespace idem::testing

#endif  // IDEM_TESTS_SUPPORT_TEST_UTIL_H_
