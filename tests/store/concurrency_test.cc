// Many threads reserving the same IDs: exactly one kReserved per ID per lease, singles and batches
// mixed. Run under ThreadSanitizer in CI (ctest label "concurrency").
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "idem/store.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::FakeClock;
using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;

// (threads, durable_reservations)
class ConcurrencyTest : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(ConcurrencyTest, ExactlyOneReservationPerIdAcrossThreads) {
  const int threads = std::get<0>(GetParam());
  constexpr int kIds = 300;
  ScratchDir dir;
  auto clock = std::make_shared<FakeClock>();
  Options options = ManualOptions(clock);
  options.durable_reservations = std::get<1>(GetParam());
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));

  std::vector<std::atomic<int>> winners(kIds);
  std::atomic<int> errors{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<std::string> names;
      for (int i = 0; i < kIds; ++i) names.push_back("id-" + std::to_string((i * 7 + t * 13) % kIds));
      // Odd threads use batches of 16, even threads single calls, each in its own order.
      for (int i = 0; i < kIds; i += (t % 2 ? 16 : 1)) {
        if (t % 2) {
          std::vector<std::string_view> batch;
          for (int k = i; k < std::min(kIds, i + 16); ++k) batch.push_back(names[k]);
          auto results = store->ReserveBatch(batch);
          for (size_t k = 0; k < results.size(); ++k) {
            if (!results[k].ok()) {
              errors++;
            } else if (results[k]->verdict == Verdict::kReserved) {
              winners[std::stoi(std::string(batch[k].substr(3)))]++;
            }
          }
        } else {
          absl::StatusOr<Reservation> r = store->Reserve(names[i]);
          if (!r.ok()) {
            errors++;
          } else if (r->verdict == Verdict::kReserved) {
            winners[std::stoi(names[i].substr(3))]++;
            // Half the winners commit at once, which must not let anyone else in either.
            if (i % 2 == 0 && !store->Commit(names[i], r->token).ok()) errors++;
          }
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(errors.load(), 0);
  for (int i = 0; i < kIds; ++i) EXPECT_EQ(winners[i].load(), 1) << "id-" << i;
  const Stats stats = store->GetStats();
  EXPECT_EQ(stats.reserved, static_cast<uint64_t>(kIds));
  EXPECT_EQ(stats.reserved + stats.duplicate + stats.in_flight, static_cast<uint64_t>(kIds) * threads);
}

TEST_P(ConcurrencyTest, TakeoverRaceHasOneWinnerPerExpiredLease) {
  const int threads = std::get<0>(GetParam());
  ScratchDir dir;
  auto clock = std::make_shared<FakeClock>();
  Options options = ManualOptions(clock);
  options.durable_reservations = std::get<1>(GetParam());
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  for (int round = 0; round < 5; ++round) {
    std::atomic<int> reserved{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] {
        absl::StatusOr<Reservation> r = store->Reserve("contended");
        if (r.ok() && r->verdict == Verdict::kReserved) reserved++;
      });
    }
    for (auto& w : workers) w.join();
    EXPECT_EQ(reserved.load(), 1) << "round " << round;
    clock->Advance(options.lease);  // the lease ends; the next round takes it over
  }
  EXPECT_EQ(store->GetStats().takeovers, 4u);
}

TEST(ConcurrencyCloseTest, CloseWhileOperationsRunFailsThemCleanly) {
  ScratchDir dir;
  Options options;
  options.maintenance_interval = absl::Milliseconds(1);
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  std::atomic<bool> stop{false};
  std::atomic<int> unexpected{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        absl::StatusOr<Reservation> r = store->Reserve(std::to_string(t) + "-" + std::to_string(i));
        if (!r.ok() && r.status().code() != absl::StatusCode::kFailedPrecondition) unexpected++;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_THAT(store->Close(), IsOk());
  stop = true;
  for (auto& w : workers) w.join();
  EXPECT_EQ(unexpected.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(ThreadsAndModes, ConcurrencyTest,
                         ::testing::Combine(::testing::Values(2, 4, 16), ::testing::Bool()));

}  // namespace
}  // namespace idem
