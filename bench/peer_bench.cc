// The peers a user would pick instead of idem, each done the way its own documentation recommends,
// measured in the same run as idem's BM_Cycle (one "is it new? then mark it" step per event).
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "rocksdb/utilities/db_ttl.h"
#include "rocksdb/utilities/transaction_db.h"
#include "testing/workload.h"

extern char** environ;

namespace idem::bench {
namespace {

uint64_t PeerBase() {
  static std::atomic<uint64_t> next{1ULL << 50};
  return next.fetch_add(1ULL << 32);
}

rocksdb::Options PeerRocksOptions() {
  Options idem_options;
  rocksdb::Options options(engine::DBOptionsFor(idem_options), ColumnFamilyOptionsFor(idem_options));
  options.compaction_filter_factory = nullptr;  // the peer has no idem records to filter
  return options;
}

// RocksDB pessimistic transactions: GetForUpdate locks the key, Put marks it, Commit writes.
void BM_Peer_TransactionDB(benchmark::State& state) {
  Scratch dir("peer-txn");
  rocksdb::TransactionDB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::TransactionDB::Open(PeerRocksOptions(), rocksdb::TransactionDBOptions(), dir.path(), &raw);
  if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  std::unique_ptr<rocksdb::TransactionDB> db(raw);
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = PeerBase();
  std::string key, value;
  for (auto _ : state) {
    ids.Make(i++, &key);
    latency.Start();
    std::unique_ptr<rocksdb::Transaction> txn(db->BeginTransaction(rocksdb::WriteOptions()));
    s = txn->GetForUpdate(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) s = txn->Put(key, "done");
    if (s.ok()) s = txn->Commit();
    latency.Stop();
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// RocksDB's TTL utility: Get, and Put when absent, under a mutex (DBWithTTL has no atomic insert-if-absent).
void BM_Peer_DBWithTTL(benchmark::State& state) {
  Scratch dir("peer-ttl");
  rocksdb::DBWithTTL* raw = nullptr;
  rocksdb::Status s = rocksdb::DBWithTTL::Open(PeerRocksOptions(), dir.path(), &raw, 86400);
  if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  std::unique_ptr<rocksdb::DBWithTTL> db(raw);
  std::mutex mu;
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = PeerBase();
  std::string key, value;
  for (auto _ : state) {
    ids.Make(i++, &key);
    latency.Start();
    {
      std::lock_guard<std::mutex> lock(mu);
      s = db->Get(rocksdb::ReadOptions(), key, &value);
      if (s.IsNotFound()) s = db->Put(rocksdb::WriteOptions(), key, "done");
    }
    latency.Stop();
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// SQLite: INSERT OR IGNORE into a primary-keyed table, WAL mode, synchronous=NORMAL; changes() says new.
void BM_Peer_SQLite(benchmark::State& state) {
  Scratch dir("peer-sqlite");
  sqlite3* db = nullptr;
  if (sqlite3_open((dir.path() + "/ids.db").c_str(), &db) != SQLITE_OK) return state.SkipWithError("sqlite open");
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
               "CREATE TABLE ids(id BLOB PRIMARY KEY, done_at INTEGER) WITHOUT ROWID;",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO ids(id, done_at) VALUES(?, ?)", -1, &insert, nullptr);
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = PeerBase();
  std::string key;
  for (auto _ : state) {
    ids.Make(i++, &key);
    latency.Start();
    sqlite3_bind_blob(insert, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert, 2, 1);
    const int rc = sqlite3_step(insert);
    const bool is_new = sqlite3_changes(db) == 1;
    sqlite3_reset(insert);
    latency.Stop();
    if (rc != SQLITE_DONE || !is_new) {
      state.SkipWithError(sqlite3_errmsg(db));
      break;
    }
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

// A redis-server of our own on a free loopback port, in a scratch directory, stopped at destruction.
class RedisServer {
 public:
  RedisServer() : dir_("peer-redis") {
    const char* candidates[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server"};
    for (const char* c : candidates) {
      if (std::filesystem::exists(c)) binary_ = c;
    }
    if (binary_.empty()) return;
    port_ = FreePort();
    // Redis's documented durable setting: AOF with fsync every second.
    std::vector<std::string> args = {
        binary_,        "--port", std::to_string(port_), "--bind",   "127.0.0.1",   "--dir", dir_.path(),  "--save", "",
        "--appendonly", "yes",    "--appendfsync",       "everysec", "--daemonize", "no",    "--loglevel", "warning"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
    for (int attempt = 0; attempt < 200 && pid_ > 0; ++attempt) {
      context_ = redisConnect("127.0.0.1", port_);
      if (context_ != nullptr && context_->err == 0) return;
      if (context_ != nullptr) redisFree(context_);
      context_ = nullptr;
      absl::SleepFor(absl::Milliseconds(25));
    }
  }
  ~RedisServer() {
    if (context_ != nullptr) redisFree(context_);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool installed() const { return !binary_.empty(); }
  redisContext* context() const { return context_; }

 private:
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
  }

  Scratch dir_;
  std::string binary_;
  int port_ = 0;
  pid_t pid_ = -1;
  redisContext* context_ = nullptr;
};

// Redis over loopback: SET key 1 NX PX <ttl>; "OK" means new, nil means seen.
void BM_Peer_RedisSetNx(benchmark::State& state) {
  RedisServer server;
  if (!server.installed()) return state.SkipWithError("redis-server is not installed: skipped, not faked");
  if (server.context() == nullptr) return state.SkipWithError("redis-server did not start");
  IdGenerator ids(IdShape::kRandom16);
  LatencyRecorder latency(state);
  uint64_t i = PeerBase();
  std::string key;
  for (auto _ : state) {
    ids.Make(i++, &key);
    latency.Start();
    auto* reply = static_cast<redisReply*>(
        redisCommand(server.context(), "SET %b 1 NX PX %d", key.data(), key.size(), 86'400'000));
    latency.Stop();
    const bool is_new = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
    if (reply != nullptr) freeReplyObject(reply);
    if (!is_new) return state.SkipWithError("SET NX did not answer OK for a new key");
  }
  latency.Report();
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Peer_TransactionDB);
BENCHMARK(BM_Peer_DBWithTTL);
BENCHMARK(BM_Peer_SQLite);
BENCHMARK(BM_Peer_RedisSetNx);

}  // namespace
}  // namespace idem::bench
