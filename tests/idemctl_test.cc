// idemctl against real stores: every subcommand, a corrupt record for verify, a held store.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::testing::HasSubstr;

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CliRun Idemctl(const std::string& args) {
  CliRun run;
  FILE* pipe = popen((std::string(IDEMCTL) + " " + args + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return run;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) run.output.append(buf, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

class IdemctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Sub("store");
    Options options;
    options.maintenance_interval = absl::ZeroDuration();
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, path_));
    for (int i = 0; i < 20; ++i) {
      const std::string id = "order-" + std::to_string(i);
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve(id));
      if (i < 15) {
        ASSERT_THAT(store->Commit(id, r.token, "receipt-" + std::to_string(i)), IsOk());
      }
    }
    ASSERT_THAT(store->Close(), IsOk());
  }

  ScratchDir dir_;
  std::string path_;
};

TEST_F(IdemctlTest, StatsCountsRecordsInEveryFormat) {
  CliRun text = Idemctl("stats " + path_);
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_THAT(text.output, HasSubstr("15 done, 5 reserved"));
  CliRun json = Idemctl("stats " + path_ + " --format=json");
  EXPECT_EQ(json.exit_code, 0);
  EXPECT_THAT(json.output, HasSubstr("\"done\":15"));
  CliRun prom = Idemctl("stats " + path_ + " --format=prometheus");
  EXPECT_THAT(prom.output, HasSubstr("idem_store_records{state=\"reserved\"} 5"));
  EXPECT_NE(Idemctl("stats " + path_ + " --format=xml").exit_code, 0);
}

TEST_F(IdemctlTest, GetAndScanDecodeRecords) {
  CliRun get = Idemctl("get " + path_ + " order-3");
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_THAT(get.output, HasSubstr("order-3  done"));
  EXPECT_THAT(get.output, HasSubstr("UTC"));
  CliRun hex = Idemctl("get " + path_ + " --hex 6f726465722d33");  // "order-3"
  EXPECT_EQ(hex.exit_code, 0) << hex.output;
  EXPECT_THAT(hex.output, HasSubstr("done"));
  EXPECT_EQ(Idemctl("get " + path_ + " never-seen").exit_code, 1);
  CliRun reserved = Idemctl("scan " + path_ + " --state=reserved");
  EXPECT_EQ(reserved.exit_code, 0);
  EXPECT_THAT(reserved.output, HasSubstr("order-19  reserved"));
  EXPECT_THAT(reserved.output, ::testing::Not(HasSubstr("done")));
  CliRun limited = Idemctl("scan " + path_ + " --limit=3");
  EXPECT_EQ(std::count(limited.output.begin(), limited.output.end(), '\n'), 3);
}

TEST_F(IdemctlTest, VerifyReportsCorruptRecordsWithTheirKeys) {
  EXPECT_EQ(Idemctl("verify " + path_).exit_code, 0);
  {
    Options options;
    options.maintenance_interval = absl::ZeroDuration();
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, path_));
    ASSERT_TRUE(store->db()->Put(rocksdb::WriteOptions(), store->column_family(), "bad-one", "garbage").ok());
  }
  CliRun verify = Idemctl("verify " + path_);
  EXPECT_EQ(verify.exit_code, 1);
  EXPECT_THAT(verify.output, HasSubstr("corrupt record: bad-one"));
  EXPECT_THAT(verify.output, HasSubstr("1 corrupt"));
}

TEST_F(IdemctlTest, CompactAndCheckpoint) {
  CliRun compact = Idemctl("compact " + path_);
  EXPECT_EQ(compact.exit_code, 0) << compact.output;
  EXPECT_THAT(compact.output, HasSubstr("compacted"));
  const std::string copy = dir_.Sub("copy");
  CliRun checkpoint = Idemctl("checkpoint " + path_ + " " + copy);
  EXPECT_EQ(checkpoint.exit_code, 0) << checkpoint.output;
  CliRun stats = Idemctl("stats " + copy);
  EXPECT_THAT(stats.output, HasSubstr("15 done, 5 reserved"));
}

TEST_F(IdemctlTest, HeldStoreIsReadableButNotCompactable) {
  Options options;
  options.maintenance_interval = absl::ZeroDuration();
  IDEM_ASSERT_OK_AND_ASSIGN(auto holder, Store::Open(options, path_));  // this process holds it
  CliRun stats = Idemctl("stats " + path_);
  EXPECT_EQ(stats.exit_code, 0) << stats.output;
  EXPECT_THAT(stats.output, HasSubstr("15 done"));
  CliRun compact = Idemctl("compact " + path_);
  EXPECT_EQ(compact.exit_code, 3);
  EXPECT_THAT(compact.output, HasSubstr("held by another process"));
}

TEST_F(IdemctlTest, NotAStoreIsAClearError) {
  CliRun missing = Idemctl("stats " + dir_.Sub("nothing-here"));
  EXPECT_EQ(missing.exit_code, 3);
  EXPECT_THAT(missing.output, HasSubstr("not a directory"));
  CliRun help = Idemctl("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output, HasSubstr("checkpoint"));
  EXPECT_THAT(Idemctl("scan --help").output, HasSubstr("--state"));
}

}  // namespace
}  // namespace idem
