// The metrics collector and its formatters: what a scraper and promtool see, for a store, a partition
// set and idemctl stats, and the JSON form.
#include "util/metrics.h"

#include <cstdio>
#include <string>

#include "idem/partition_set.h"
#include "idem/store.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::testing::HasSubstr;

// `promtool check metrics` on `text`: its exit code and what it said. IDEM_PROMTOOL is set when CMake
// found promtool (scripts/install-deps installs Debian's prometheus package, which ships it).
std::pair<int, std::string> Promtool(const std::string& text) {
#ifdef IDEM_PROMTOOL
  ScratchDir dir;
  const std::string file = dir.Sub("metrics.txt");
  FILE* f = std::fopen(file.c_str(), "w");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  FILE* pipe = popen((std::string(IDEM_PROMTOOL) + " check metrics < " + file + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
#else
  (void)text;
  return {-2, "promtool not found at configure time"};
#endif
}

#define EXPECT_PROMTOOL_ACCEPTS(text)             \
  do {                                            \
    const auto [code, said] = Promtool(text);     \
    if (code == -2) GTEST_SKIP() << said;         \
    EXPECT_EQ(code, 0) << said << "\n" << (text); \
  } while (0)

TEST(MetricsTest, FamiliesKeepTheirSamplesTogetherWithHelpAndType) {
  util::Metrics m;
  m.Add("a_total", "A.", util::MetricType::kCounter, "p=\"1\"", uint64_t{3});
  m.Add("b", "B.", util::MetricType::kGauge, "", 0.25);
  m.Add("a_total", "A.", util::MetricType::kCounter, "p=\"" + util::LabelValue("x\"y\\z\n") + "\"", uint64_t{4});
  EXPECT_EQ(m.Prometheus(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{p=\"1\"} 3\na_total{p=\"x\\\"y\\\\z\\n\"} 4\n"
            "# HELP b B.\n# TYPE b gauge\nb 0.25\n");
  EXPECT_EQ(
      m.Json(),
      "{\"a_total\":[{\"labels\":{\"p\":\"1\"},\"value\":3},{\"labels\":{\"p\":\"x\\\"y\\\\z\\u000a\"},\"value\":4}],"
      "\"b\":0.25}");
  // Counters are exact integers, however large.
  util::Metrics big;
  big.Add("c_total", "C.", util::MetricType::kCounter, "", uint64_t{18446744073709551615ULL});
  EXPECT_THAT(big.Prometheus(), HasSubstr("c_total 18446744073709551615\n"));
}

TEST(MetricsTest, StoreStatsPassPromtoolWithSummarySumAndCount) {
  ScratchDir dir;
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  for (int i = 0; i < 10; ++i) {
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("id-" + std::to_string(i)));
    ASSERT_THAT(store->Commit("id-" + std::to_string(i), r.token), IsOk());
  }
  const Stats stats = store->GetStats();
  EXPECT_GT(stats.commit_latency.sum, absl::ZeroDuration());
  EXPECT_GE(stats.commit_latency.sum, stats.commit_latency.max);
  const std::string text = stats.ToPrometheus();
  EXPECT_THAT(text, HasSubstr("idem_commit_seconds_sum "));
  EXPECT_THAT(text, HasSubstr("idem_commit_seconds_count 10\n"));
  EXPECT_THAT(stats.ToJson(), HasSubstr("\"idem_committed_total\":10"));
  EXPECT_PROMTOOL_ACCEPTS(text);
}

TEST(MetricsTest, PartitionSetMetricsPassPromtool) {
  ScratchDir dir;
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(PartitionSetOptions(), dir.Sub("set")));
  for (const char* name : {"orders/1", "orders/\"2\""}) {
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(PartitionLayout{name, {}}, ActivateOptions{}));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("evt"));
    ASSERT_THAT(p->store().Commit("evt", r.token), IsOk());
  }
  const std::string text = set->ToPrometheus();
  EXPECT_THAT(text, HasSubstr("idem_committed_total{partition=\"orders/1\"} 1"));
  EXPECT_THAT(text, HasSubstr("idem_committed_total{partition=\"orders/\\\"2\\\"\"} 1"));
  EXPECT_THAT(text, HasSubstr("idem_partition_set_active_partitions 2"));
  EXPECT_PROMTOOL_ACCEPTS(text);
}

#ifdef IDEMCTL
TEST(MetricsTest, IdemctlStatsPassPromtool) {
  ScratchDir dir;
  {
    Options options = ManualOptions();
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("evt"));
    ASSERT_THAT(store->Commit("evt", r.token), IsOk());
    ASSERT_THAT(store->CompactExpired(), IsOk());
  }
  FILE* pipe = popen((std::string(IDEMCTL) + " stats " + dir.Sub("db") + " --format=prometheus").c_str(), "r");
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
  ASSERT_EQ(pclose(pipe), 0);
  EXPECT_THAT(text, HasSubstr("idem_store_records{state=\"done\"} 1"));
  EXPECT_PROMTOOL_ACCEPTS(text);
}
#endif

}  // namespace
}  // namespace idem
