// idemctl against real stores: every subcommand, a corrupt record for verify, a held store.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "idem/partition_set.h"
#include "idem/store.h"
#include "idem/version.h"
#include "rocksdb/comparator.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::testing::HasSubstr;
using ::testing::Not;

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs idemctl with `args`; `output` is stdout and stderr, or stdout alone with stdout_only.
CliRun Idemctl(const std::string& args, bool stdout_only = false) {
  CliRun run;
  FILE* pipe = popen((std::string(IDEMCTL) + " " + args + (stdout_only ? " 2>/dev/null" : " 2>&1")).c_str(), "r");
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
    Options options = ManualOptions();
    options.durable_reservations = true;  // the five left reserved are records the tools must show
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

TEST_F(IdemctlTest, GetAndScanSpeakJson) {
  CliRun get = Idemctl("get " + path_ + " order-3 --format=json", /*stdout_only=*/true);
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_THAT(get.output, HasSubstr("{\"id\":\"order-3\",\"state\":\"done\",\"expired\":false,\"token\":"));
  EXPECT_THAT(get.output, HasSubstr("\"result\":\"receipt-3\"}"));
  EXPECT_THAT(get.output, HasSubstr("\"deadline\":\"20"));
  // Not found: nothing on stdout, the reason on stderr, exit 1, in JSON mode too.
  CliRun missing = Idemctl("get " + path_ + " never-seen --format=json", /*stdout_only=*/true);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.output, "");
  CliRun scan = Idemctl("scan " + path_ + " --format=json --limit=4", /*stdout_only=*/true);
  EXPECT_EQ(scan.exit_code, 0);
  int lines = 0;
  for (size_t at = 0; (at = scan.output.find("{\"id\":", at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 4) << scan.output;
  EXPECT_EQ(std::count(scan.output.begin(), scan.output.end(), '\n'), 4);
  EXPECT_EQ(Idemctl("scan " + path_ + " --format=xml").exit_code, 2);
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
  CliRun limited = Idemctl("scan " + path_ + " --limit=3", /*stdout_only=*/true);  // the records; notes go to stderr
  EXPECT_EQ(std::count(limited.output.begin(), limited.output.end(), '\n'), 3);
}

TEST_F(IdemctlTest, VerifyReportsCorruptRecordsWithTheirKeys) {
  EXPECT_EQ(Idemctl("verify " + path_).exit_code, 0);
  {
    Options options = ManualOptions();
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
  Options options = ManualOptions();
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

// compact and checkpoint on something that is not an idem store: refused, nothing created or added.
TEST_F(IdemctlTest, CompactAndCheckpointRefuseWhatIsNotAStoreAndChangeNothing) {
  const std::string empty = dir_.Sub("empty");
  std::filesystem::create_directories(empty);
  for (const std::string& cmd :
       {"compact " + empty, "checkpoint " + empty + " " + dir_.Sub("cp1"), "forget " + empty + " x"}) {
    CliRun run = Idemctl(cmd);
    EXPECT_NE(run.exit_code, 0) << cmd << "\n" << run.output;
    EXPECT_TRUE(std::filesystem::is_empty(empty)) << cmd << " wrote into an empty directory";
  }
  // A plain RocksDB without idem's column family.
  const std::string plain = dir_.Sub("plain");
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, plain, &raw).ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), "k", "v").ok());
    delete raw;
  }
  for (const std::string& cmd : {"compact " + plain, "checkpoint " + plain + " " + dir_.Sub("cp2")}) {
    CliRun run = Idemctl(cmd);
    EXPECT_EQ(run.exit_code, 3) << cmd << "\n" << run.output;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), plain, &names).ok());
    EXPECT_EQ(names, std::vector<std::string>{"default"}) << cmd << " added a column family";
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("cp1")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("cp2")));
}

TEST_F(IdemctlTest, ForgetDeletesOneRecordOnPurpose) {
  CliRun run = Idemctl("forget " + path_ + " order-3");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("new again"));
  EXPECT_EQ(Idemctl("forget " + path_ + " order-3").exit_code, 1) << "nothing left to forget";
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, path_));
  EXPECT_EQ(store->Reserve("order-3")->verdict, Verdict::kReserved);
  EXPECT_EQ(store->Reserve("order-4")->verdict, Verdict::kDuplicate);
}

// A WAL corrupt before its tail: Open refuses (kDataLoss); recover opens it, lists the forgotten
// commits, and the store opens normally afterwards with everything before the damage.
TEST_F(IdemctlTest, RecoverOpensACorruptWalAndListsWhatWasDropped) {
  const std::string live = dir_.Sub("live");
  const std::string image = dir_.Sub("image");
  Options options = ManualOptions();
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, live));
    for (int i = 0; i < 100; ++i) {
      const std::string id = "evt-" + std::to_string(i);
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve(id));
      ASSERT_THAT(store->Commit(id, r.token, "ok"), IsOk());
    }
    std::filesystem::copy(live, image);  // a crash image: everything is still in the WAL
  }
  std::filesystem::remove(image + "/LOCK");
  std::string wal;
  for (const auto& e : std::filesystem::directory_iterator(image)) {
    if (e.path().extension() == ".log" && e.file_size() > 1000) wal = e.path().string();
  }
  ASSERT_FALSE(wal.empty());
  {
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(wal) / 2));
    f.write("\xff\xff\xff", 3);
  }
  EXPECT_THAT(Store::Open(options, image), testing::StatusIs(absl::StatusCode::kDataLoss));
  CliRun run = Idemctl("recover " + image);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("forgotten commit: evt-99"));
  EXPECT_THAT(run.output, HasSubstr("opens normally again"));
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, image));
  EXPECT_EQ(store->Reserve("evt-0")->verdict, Verdict::kDuplicate);
  EXPECT_EQ(store->Reserve("evt-99")->verdict, Verdict::kReserved) << "listed as forgotten";
}

// A comparator RocksDB cannot make from its name: idemctl has no way to open its family for writing.
class LengthFirst : public rocksdb::Comparator {
 public:
  const char* Name() const override { return "idem.test.LengthFirst"; }
  int Compare(const rocksdb::Slice& a, const rocksdb::Slice& b) const override {
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    return a.compare(b);
  }
  void FindShortestSeparator(std::string*, const rocksdb::Slice&) const override {}
  void FindShortSuccessor(std::string*) const override {}
};

// A store with a family of the caller's ordered by `comparator`, holding one ledger key per event.
void MakeStoreWithCallersComparator(const std::string& path, const rocksdb::Comparator* comparator) {
  auto ledger = std::make_shared<rocksdb::ColumnFamilyOptions>();
  ledger->comparator = comparator;
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, path, {{"ledger", ledger}}));
  for (int i = 0; i < 10; ++i) {
    const std::string id = "order-" + std::to_string(i);
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve(id));
    rocksdb::WriteBatch effects;
    effects.Put(store->family("ledger"), id, "paid");
    ASSERT_THAT(store->Commit(id, r.token, "ok", &effects), IsOk());
  }
}

// The caller's family has its own comparator, one RocksDB knows by name: every command works, and the
// caller's family is left as it was.
TEST_F(IdemctlTest, CommandsWorkBesideACallersFamilyWithItsOwnComparator) {
  const std::string path = dir_.Sub("reverse");
  MakeStoreWithCallersComparator(path, rocksdb::ReverseBytewiseComparator());
  for (const std::string& cmd : {"forget " + path + " order-3", "compact " + path,
                                 "checkpoint " + path + " " + dir_.Sub("copy"), "recover " + path}) {
    CliRun run = Idemctl(cmd);
    EXPECT_EQ(run.exit_code, 0) << cmd << "\n" << run.output;
  }
  auto ledger = std::make_shared<rocksdb::ColumnFamilyOptions>();
  ledger->comparator = rocksdb::ReverseBytewiseComparator();
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, path, {{"ledger", ledger}}));
  EXPECT_EQ(store->Reserve("order-3")->verdict, Verdict::kReserved) << "forgotten";
  EXPECT_EQ(store->Reserve("order-4")->verdict, Verdict::kDuplicate);
  std::unique_ptr<rocksdb::Iterator> it(store->db()->NewIterator(rocksdb::ReadOptions(), store->family("ledger")));
  int keys = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++keys;
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  EXPECT_EQ(keys, 10);
}

// A comparator RocksDB cannot make: the commands that need the store for writing say why and what to
// do (exit 3, nothing changed); the read-only ones, which open the store's own families only, work.
TEST_F(IdemctlTest, ACallersComparatorIdemctlCannotMakeIsAClearRefusal) {
  const std::string path = dir_.Sub("custom");
  LengthFirst comparator;
  MakeStoreWithCallersComparator(path, &comparator);
  for (const std::string& cmd : {"forget " + path + " order-3", "compact " + path}) {
    CliRun run = Idemctl(cmd);
    EXPECT_EQ(run.exit_code, 3) << cmd << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr("'ledger'")) << cmd;
    EXPECT_THAT(run.output, HasSubstr("idem.test.LengthFirst")) << cmd;
  }
  CliRun get = Idemctl("get " + path + " order-3");
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_THAT(get.output, HasSubstr("done"));
  EXPECT_EQ(Idemctl("stats " + path).exit_code, 0);
}

// A partition set's records are replicated through each partition's changelog: forget and recover
// would change the local copy behind the changelog's back (and it would stay marked clean). Refused,
// with what to do instead; the read-only commands work.
TEST_F(IdemctlTest, MutatingCommandsRefuseAPartitionSet) {
  const std::string path = dir_.Sub("set");
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(PartitionSetOptions(), path));
    IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(PartitionLayout{"a", {"ledger"}}, ActivateOptions{}));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("evt"));
    ASSERT_THAT(p->store().Commit("evt", r.token, "ok"), IsOk());
    ASSERT_THAT(set->Deactivate("a", KeepLocalCopy::kKeep, 1), IsOk());
  }
  for (const std::string& cmd :
       {"--column-family=p:a:0 forget " + path + " evt", "--column-family=p:a:0 recover " + path,
        "forget " + path + " evt", "recover " + path}) {
    CliRun run = Idemctl(cmd);
    EXPECT_EQ(run.exit_code, 3) << cmd << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr("changelog")) << cmd;
  }
  CliRun get = Idemctl("--column-family=p:a:0 get " + path + " evt");
  EXPECT_EQ(get.exit_code, 0) << get.output;
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(PartitionSetOptions(), path));
  ASSERT_EQ(set->LocalCopies().size(), 1u);
  EXPECT_TRUE(set->LocalCopies()[0].clean);
  ActivateOptions reuse;
  reuse.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(PartitionLayout{"a", {"ledger"}}, reuse));
  EXPECT_EQ(p->store().Reserve("evt")->verdict, Verdict::kDuplicate) << "not forgotten behind the changelog";
}

// Conventions: --version, and "not found" and errors on stderr only (stdout stays parseable).
TEST_F(IdemctlTest, VersionAndErrorsOnStderr) {
  CliRun version = Idemctl("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.output, HasSubstr(std::string("idemctl ") + Version()));
  CliRun missing = Idemctl("get " + path_ + " no-such-id", /*stdout_only=*/true);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.output, "") << "a 'not found' went to stdout";
  CliRun missing_err = Idemctl("get " + path_ + " no-such-id");
  EXPECT_THAT(missing_err.output, HasSubstr("no record"));
}

TEST_F(IdemctlTest, UsageErrorsExitTwoOnStderrAndScanSaysItStoppedAtItsLimit) {
  for (const std::string& args : {std::string("no-such-command"), std::string("get"), "scan " + path_ + " --limit 0",
                                  "scan " + path_ + " --limit x", "stats " + path_ + " --format yaml"}) {
    CliRun run = Idemctl(args);
    EXPECT_EQ(run.exit_code, 2) << args << "\n" << run.output;
    EXPECT_EQ(Idemctl(args, /*stdout_only=*/true).output, "") << args << ": usage error on stdout";
  }
  EXPECT_THAT(Idemctl("no-such-command").output, HasSubstr("no-such-command"));
  CliRun limited = Idemctl("scan " + path_ + " --limit 3");
  EXPECT_EQ(limited.exit_code, 0);
  EXPECT_THAT(limited.output, HasSubstr("stopped at --limit=3"));
  EXPECT_THAT(Idemctl("scan " + path_ + " --limit 1000").output, Not(HasSubstr("stopped at")));
}

std::string ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

// A small run: small memtables so that files are flushed and dropped, redeliveries reaching back further
// than the recent-commit cache (65 536 IDs) so that RocksDB answers them, and a FIFO
// size cap small enough to drop live IDs. tune must see that and refuse to recommend it.
TEST(IdemctlTuneTest, MeasuresEveryConfigurationAndMarksTheUnsafeOne) {
  ScratchDir dir;
  const std::string out = dir.Sub("out");
  CliRun run = Idemctl(
      "tune --events 120000 --ttl 30s --rate 1000 --distance 100000 --memtable 64K "
      "--profiles leveled,fifo-capped --fifo-cap 128K --no-plots --scratch " +
      dir.path() + " --out " + out);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("best safe configuration: leveled"));
  EXPECT_THAT(run.output, HasSubstr("UNSAFE"));
  EXPECT_THAT(run.output, HasSubstr("options.compaction = idem::CompactionProfile::kLeveled;"));
  EXPECT_THAT(run.output, HasSubstr("options.ttl = absl::Seconds(30);"));  // the user's own TTL

  const std::string csv = ReadFile(out + "/results.csv");
  ASSERT_FALSE(csv.empty());
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3) << csv;  // header + two configurations
  EXPECT_THAT(csv, HasSubstr("leveled bloom10"));
  // The leveled row is safe and admitted no duplicate; the capped FIFO row is not.
  const size_t leveled = csv.find("\nleveled");
  const size_t capped = csv.find("\nfifo-capped");
  ASSERT_NE(leveled, std::string::npos);
  ASSERT_NE(capped, std::string::npos);
  EXPECT_THAT(csv.substr(leveled, csv.find('\n', leveled + 1) - leveled), HasSubstr(",0,"));
  EXPECT_THAT(csv.substr(leveled, csv.find('\n', leveled + 1) - leveled), HasSubstr(",yes,"));
  EXPECT_THAT(csv.substr(capped), HasSubstr(",no,"));
  EXPECT_THAT(ReadFile(out + "/timeline.csv"), HasSubstr("config,simulated_seconds,disk_bytes"));
  // Scratch stores are removed afterwards.
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("idem-tune-" + std::to_string(getpid()))));
}

TEST(IdemctlTuneTest, DrawsPlotsWhenMatplotlibIsThere) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3-matplotlib is not installed";
  }
  ScratchDir dir;
  // A name the shell would split or expand, unless every layer passes it on as one word.
  const std::string out = dir.Sub("it's $HOME out");
  CliRun run = Idemctl("tune --events 5000 --profiles leveled,universal --scratch " + dir.path() + " --out \"" +
                       dir.path() + "/it's \\$HOME out\"");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, Not(HasSubstr("plots not drawn"))) << run.output;
  for (const char* png : {"/disk.png", "/latency.png"}) {
    EXPECT_EQ(ReadFile(out + png).substr(0, 4), "\x89PNG") << png;
  }
}

// Safe means shown safe: a run shorter than a few TTL periods proves nothing about expiry, and a
// preset's compressed TTL is never printed as the TTL to use.
TEST(IdemctlTuneTest, AShortRunRecommendsNothingAndAPresetsTtlIsNotTheUsers) {
  ScratchDir dir;
  CliRun short_run = Idemctl("tune --events 20000 --profiles leveled --no-plots --scratch " + dir.path() + " --out " +
                             dir.Sub("short"));
  ASSERT_EQ(short_run.exit_code, 0) << short_run.output;
  EXPECT_THAT(short_run.output, HasSubstr("not proven: covered 0.2 TTL periods (needs 3)"));
  EXPECT_THAT(short_run.output, HasSubstr("no configuration was shown safe"));
  EXPECT_THAT(short_run.output, Not(HasSubstr("best safe configuration")));
  CliRun preset = Idemctl("tune --events 480000 --profiles leveled --no-plots --scratch " + dir.path() + " --out " +
                          dir.Sub("preset"));
  ASSERT_EQ(preset.exit_code, 0) << preset.output;
  EXPECT_THAT(preset.output, HasSubstr("best safe configuration: leveled"));
  EXPECT_THAT(preset.output, HasSubstr("// options.ttl = <your retention>;"));
  EXPECT_THAT(preset.output, Not(HasSubstr("\noptions.ttl =")));
}

TEST(IdemctlTuneTest, ReplotSaysWhatIsWrongWithItsDirectory) {
  CliRun missing = Idemctl("tune --replot /nonexistent-idem-dir");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("'/nonexistent-idem-dir' is not a directory"));
  EXPECT_THAT(missing.output, Not(HasSubstr("matplotlib")));
  ScratchDir dir;
  CliRun empty = Idemctl("tune --replot " + dir.path());
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.output, HasSubstr("holds no results.csv"));
}

TEST(IdemctlTuneTest, RefusesContradictoryWorkloadAndHasHelp) {
  CliRun run = Idemctl("tune --ttl 10s --lease 30s");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("must be shorter than the ttl"));
  CliRun help = Idemctl("tune --help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--preset", "--profiles", "--bloom-bits", "--block-cache", "--memtable", "--leases",
                           "--sync", "--rate", "--duplicates", "--distance", "--shape", "--events", "--threads"}) {
    EXPECT_THAT(help.output, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace idem
