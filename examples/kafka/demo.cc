// The Kafka system, for real on librdkafka's mock cluster (scripts/demo-kafka):
//   a producer with retries and duplicate sends -> topic `deposits` (8 partitions) -> a consumer group of
//   ledger members, each a process with idem on a PartitionSet (per-account balances in a
//   partition-local column family) whose commits are replicated to `deposits-changelog`.
// Mid-run: one member is SIGKILLed, a fourth joins, one is stopped (SIGSTOP) past the session timeout
// and continued (a zombie). At the end a verifier restores every partition from the changelog, compares
// it with the owners' own copies, replays the whole log as an audit, and checks exactly-once against
// what was produced.
//
//   kafka_demo [--events=N] [--accounts=N] [--dir=PATH]      the orchestrator (mock cluster in-process);
//                                                             it works in PATH/idem-kafka-demo-<pid>, its own
//   kafka_demo member --bootstrap=... --state=...            one member (testing/kafka_member.h)
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "idem/kafka_mock.h"
#include "testing/flags.h"
#include "testing/kafka_ledger.h"
#include "testing/kafka_member.h"

extern char** environ;

namespace {

using Steady = std::chrono::steady_clock;
constexpr int kPartitions = 8;

double Since(Steady::time_point t) { return std::chrono::duration<double>(Steady::now() - t).count(); }

class MemberProcess {
 public:
  MemberProcess(const std::string& name, const std::string& bootstrap, const std::string& dir,
                std::vector<std::string> extra = {})
      : name_(name), stats_(dir + "/" + name + ".stats") {
    std::vector<std::string> args = {"/proc/self/exe",
                                     "member",
                                     "--bootstrap=" + bootstrap,
                                     "--group=ledger",
                                     "--input=deposits",
                                     "--changelog=deposits-changelog",
                                     "--state=" + dir + "/" + name,
                                     "--stats=" + stats_,
                                     "--snapshot-bytes=65536"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~MemberProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void Signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
  }
  void Wait() {
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void Kill() {
    Signal(SIGKILL);
    Wait();
  }
  bool Stopped() const {
    int status = 0;
    return pid_ > 0 && waitpid(pid_, &status, WUNTRACED | WNOHANG) == pid_ && WIFSTOPPED(status);
  }
  std::map<std::string, double> Stats() const { return idem::ledger::ReadMemberStats(stats_); }
  const std::string& name() const { return name_; }

 private:
  std::string name_, stats_;
  pid_t pid_ = -1;
};

template <typename Condition>
bool Await(Condition condition, double seconds) {
  const auto end = Steady::now() + std::chrono::duration<double>(seconds);
  while (Steady::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

int Orchestrate(int events, int accounts, std::string base) {
  // The run works in a directory of its own, made here and removed at the end: never one it did not
  // create (a --dir that names a directory holding something else is left as it is).
  if (base.empty()) base = std::filesystem::temp_directory_path().string();
  const std::string dir = (std::filesystem::path(base) / ("idem-kafka-demo-" + std::to_string(getpid()))).string();
  std::error_code ec;
  std::filesystem::create_directories(base, ec);
  if (ec || !std::filesystem::create_directory(dir, ec) || ec) {
    std::fprintf(stderr, "kafka_demo: cannot create a fresh working directory %s%s%s\n", dir.c_str(),
                 ec ? ": " : " (it exists already)", ec ? ec.message().c_str() : "");
    return 2;
  }
  auto cluster = idem::KafkaMockCluster::Create(3);
  if (!cluster.ok()) {
    std::fprintf(stderr, "mock cluster: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  idem::KafkaMockCluster& mock = **cluster;
  if (!mock.CreateTopic("deposits", kPartitions).ok() || !mock.CreateTopic("deposits-changelog", kPartitions).ok()) {
    std::fprintf(stderr, "creating topics failed\n");
    return 1;
  }
  const std::string bootstrap = mock.bootstrap_servers();
  std::printf("== mock cluster (3 brokers) at %s; topics deposits and deposits-changelog, %d partitions each\n",
              bootstrap.c_str(), kPartitions);

  const std::vector<idem::ledger::Deposit> deposits = idem::ledger::Deposits(events, accounts);
  std::atomic<bool> produced{false};
  // Paced so that the members come and go while the stream runs (about 40 s for 20 000 deposits);
  // every 10th deposit sent twice.
  std::thread producer = idem::ledger::Stream(bootstrap, "deposits", deposits,
                                              std::max<size_t>(1, deposits.size() / 80), 500, 10, &produced);
  std::printf("== producer: %d deposits over %d accounts, every 10th sent twice\n", events, accounts);

  const std::vector<std::string> busy = {"--handler-delay-us=150"};  // a little work per event
  std::vector<std::unique_ptr<MemberProcess>> members;
  for (const char* name : {"m1", "m2", "m3"}) {
    std::vector<std::string> extra = busy;
    if (std::string(name) == "m3") extra.push_back("--stall-when=" + dir + "/stall-m3");
    members.push_back(std::make_unique<MemberProcess>(name, bootstrap, dir, extra));
  }
  auto active = [&](const MemberProcess& m) { return m.Stats()["active_partitions"]; };
  auto total_active = [&](std::initializer_list<const MemberProcess*> ms) {
    double n = 0;
    for (const MemberProcess* m : ms) n += active(*m);
    return n;
  };
  MemberProcess& m1 = *members[0];
  MemberProcess& m2 = *members[1];
  MemberProcess& m3 = *members[2];
  if (!Await([&] { return active(m1) > 0 && active(m2) > 0 && active(m3) > 0 && m2.Stats()["applied"] > 300; }, 90)) {
    std::fprintf(stderr, "the group did not form\n");
    return 1;
  }
  std::printf("== 3 members joined and consume\n");

  m2.Kill();
  auto killed = Steady::now();
  std::printf("== SIGKILL m2 (it had applied %.0f events)\n", m2.Stats()["applied"]);
  Await([&] { return total_active({&m1, &m3}) == kPartitions; }, 60);
  const double takeover_kill = Since(killed);
  std::printf("   its partitions restored and claimed by m1/m3 %.1f s after the kill\n", takeover_kill);

  members.push_back(std::make_unique<MemberProcess>("m4", bootstrap, dir, busy));
  MemberProcess& m4 = *members[3];
  Await([&] { return active(m4) > 0 && total_active({&m1, &m3, &m4}) == kPartitions; }, 60);
  std::printf("== m4 joined: partitions m1 %.0f, m3 %.0f, m4 %.0f\n", active(m1), active(m3), active(m4));

  // m3 stops itself (SIGSTOP) in its next handler call, mid-batch, as a long GC pause would.
  std::ofstream(dir + "/stall-m3").put('\n');
  if (!Await([&] { return m3.Stopped(); }, 30)) std::fprintf(stderr, "m3 did not stop\n");
  const auto stopped = Steady::now();
  std::printf(
      "== m3 stopped (SIGSTOP) inside a handler, mid-batch: a zombie-to-be, paused past the 4 s session "
      "timeout\n");
  Await([&] { return total_active({&m1, &m4}) == kPartitions; }, 60);
  std::printf("   m3's partitions taken over by m1/m4 %.1f s after the stop\n", Since(stopped));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  m3.Signal(SIGCONT);
  std::printf("== SIGCONT m3: it wakes believing it owns its old partitions\n");

  producer.join();
  if (!Await([&] { return idem::ledger::AllCommitted(&mock, "ledger", "deposits", kPartitions); }, 120)) {
    std::fprintf(stderr, "the input was not consumed to its end in time\n");
  }
  std::printf("== input consumed to its end; stopping the members (clean leave, copies kept)\n");
  for (MemberProcess* m : {&m1, &m3, &m4}) m->Signal(SIGTERM);
  for (MemberProcess* m : {&m1, &m3, &m4}) m->Wait();

  // The verifier.
  std::printf("== verifier\n");
  std::vector<idem::ledger::State> from_changelog =
      idem::ledger::RestoreAll(&mock, dir + "/verify", kPartitions, "ledger", "deposits", "deposits-changelog");
  uint64_t fenced_batches = 0;
  std::vector<idem::ledger::State> audit = idem::ledger::RestoreAll(
      &mock, dir + "/audit", kPartitions, "ledger", "deposits", "deposits-changelog", &fenced_batches, true);
  // The owners' own copies: each partition's last owner kept a clean copy under the last claim.
  int owners_checked = 0, owners_differ = 0;
  {
    auto truth = idem::PartitionSet::Open(idem::PartitionSetOptions(), dir + "/verify");
    const idem::KafkaRestoreOptions r = idem::ledger::RestoreOptions(bootstrap);
    std::vector<std::unique_ptr<idem::PartitionSet>> owners;
    for (const char* name : {"m1", "m2", "m3", "m4"}) {
      auto set = idem::PartitionSet::Open(idem::PartitionSetOptions(), dir + "/" + name);
      if (set.ok()) owners.push_back(*std::move(set));
    }
    for (int p = 0; truth.ok() && p < kPartitions; ++p) {
      auto restored = idem::RestoreFromChangelog(r, truth->get(), p);
      if (!restored.ok()) continue;
      auto expected = idem::ledger::ReadCopy(truth->get(), "deposits", p);
      for (auto& set : owners) {
        for (const idem::LocalCopy& c : set->LocalCopies()) {
          if (c.layout.name != "deposits/" + std::to_string(p) || !c.clean || c.claim != restored->claim) continue;
          auto own = idem::ledger::ReadCopy(set.get(), "deposits", p);
          ++owners_checked;
          if (!own.ok() || !expected.ok() || own->balances != expected->balances || own->applied != expected->applied) {
            ++owners_differ;
          }
        }
      }
    }
  }
  const idem::ledger::Verdict verdict = idem::ledger::Verify(deposits, from_changelog);
  const idem::ledger::Verdict audited = idem::ledger::Verify(deposits, audit);
  auto z = m3.Stats();
  auto stall = idem::ledger::ReadMemberStats(dir + "/m3.stats.stall");
  // The zombie's token against the floor of its partition's owner now (TokenRangeOfClaim of its claim).
  std::string token_line;
  {
    auto check = idem::PartitionSet::Open(idem::PartitionSetOptions(), dir + "/check");
    const idem::KafkaRestoreOptions r = idem::ledger::RestoreOptions(bootstrap);
    if (check.ok() && stall.count("stall_token") != 0) {
      auto restored = idem::RestoreFromChangelog(r, check->get(), static_cast<int32_t>(stall["stall_partition"]));
      if (restored.ok()) {
        const uint64_t token = static_cast<uint64_t>(stall["stall_token"]);
        const uint64_t floor = idem::TokenRangeOfClaim(restored->claim.ordinal).value_or(idem::TokenRange{}).floor;
        token_line = absl::StrCat("   the zombie's token ", token, " (claim ", token >> 40, ") is ",
                                  token < floor ? "below" : "NOT below", " the floor of partition ",
                                  stall["stall_partition"], "'s owner now (claim ", restored->claim.ordinal, ": ",
                                  floor, "): a downstream system fencing by token refuses it\n");
      }
    }
  }
  double refused = 0, applied = 0, duplicates = 0, restores = 0, catch_ups = 0, snapshots = 0, bytes = 0;
  for (MemberProcess* m : {&m1, &m2, &m3, &m4}) {
    auto s = m->Stats();
    refused += s["offset_commits_refused"];
    applied += s["applied"];
    duplicates += s["duplicates"];
    restores += s["restores"];
    catch_ups += s["catch_ups"];
    snapshots += s["snapshots"];
    bytes += s["changelog_bytes"];
  }
  std::printf(
      "   members: %.0f local commits (those of the killed and the fenced member come back as duplicates "
      "or again), %.0f duplicates answered, %.0f restores, %.0f catch-ups, %.0f snapshots, "
      "%.0f changelog bytes (%.0f per applied event)\n",
      applied, duplicates, restores, catch_ups, snapshots, bytes, applied > 0 ? bytes / applied : 0);
  std::printf(
      "   partitions restored from the changelog: %zu of %d; owners' copies checked against them: %d, "
      "differing: %d\n",
      from_changelog.size(), kPartitions, owners_checked, owners_differ);
  std::printf("   takeover after SIGKILL: %.1f s\n", takeover_kill);
  std::printf("%s", token_line.c_str());
  std::printf(
      "   offset commits refused by the group, all members: %.0f (the mock also refuses commits during a "
      "rebalance)\n",
      refused);
  std::printf(
      "zombie fenced: %.0f commits refused (%.0f offset commits refused by the group; %llu changelog "
      "batches written after a newer claim, ignored by every replay)\n",
      z["offset_commits_refused"] + static_cast<double>(fenced_batches), z["offset_commits_refused"],
      static_cast<unsigned long long>(fenced_batches));
  // A partition whose last claim was made by a member stopped while restoring it has no copy under that
  // claim: the owners' check covers the others (and must cover some).
  const bool ok = verdict.ok() && audited.ok() && owners_differ == 0 &&
                  from_changelog.size() == static_cast<size_t>(kPartitions) && owners_checked > 0;
  if (ok) {
    std::printf("exactly once: OK (%zu events, each applied once; balances of %d accounts match)\n", deposits.size(),
                accounts);
  } else {
    std::printf("exactly once: FAILED (%s; audit: %s)\n", verdict.ToString().c_str(), audited.ToString().c_str());
  }
  members.clear();
  std::filesystem::remove_all(dir, ec);  // made by this run, above
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "member") return idem::ledger::MemberMain(argc - 1, argv + 1);
  CLI::App app("The Kafka system with idem: producer -> mock cluster -> consumer group -> verifier.");
  int events = 20000, accounts = 200;
  std::string dir;
  app.add_option("--events", events, "deposits to produce");
  app.add_option("--accounts", accounts, "accounts they go to");
  app.add_option("--dir", dir, "where the run makes its working directory (default: the temp dir)");
  if (int code = idem::flags::Parse(app, argc, argv); code >= 0) return code;
  setvbuf(stdout, nullptr, _IOLBF, 0);
  return Orchestrate(events, accounts, dir);
}
