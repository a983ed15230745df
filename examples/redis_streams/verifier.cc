// Checks, from the ledgers of every partition's RocksDB, that every distinct event was applied exactly
// once and that each account's total is what the producer sent. Exit code 0 only when both hold.
// Usage: verifier --port=P --db=DIR [--partitions=2]
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "examples/redis_streams/layout.h"
#include "idem/options.h"
#include "idem/redis_streams.h"
#include "rocksdb/db.h"
#include "testing/flags.h"

int main(int argc, char** argv) {
  CLI::App app{"Checks from the ledgers that every event was applied exactly once", "stream_verifier"};
  int port = 6379, partitions = 2;
  std::string dir = "/tmp/idem-consumer";
  app.add_option("--port", port, "Redis port");
  app.add_option("--db", dir, "the consumers' store directory (partition N in <db>-N)");
  app.add_option("--partitions", partitions, "partition streams");
  if (const int exit_code = idem::flags::Parse(app, argc, argv); exit_code >= 0) return exit_code;
  idem::RedisConnection redis("127.0.0.1", port);
  if (!redis.ok()) {
    std::fprintf(stderr, "verifier: cannot connect to redis\n");
    return 1;
  }
  std::map<std::string, long long> expected_totals;
  long long expected_distinct = -1;
  auto expected = redis.Command({"HGETALL", idem::example::kExpected});
  for (size_t i = 0; expected && i + 1 < expected->elements; i += 2) {
    const std::string key(expected->element[i]->str, expected->element[i]->len);
    const std::string value(expected->element[i + 1]->str, expected->element[i + 1]->len);
    if (key == "distinct") expected_distinct = std::stoll(value);
    if (key.rfind("total:", 0) == 0) expected_totals[key.substr(6)] = std::stoll(value);
  }
  std::map<std::string, int> applications;  // event -> times applied
  std::map<std::string, long long> totals;  // account -> sum
  for (int p = 0; p < partitions; ++p) {
    const std::string path = dir + "/part-" + std::to_string(p);
    std::vector<std::string> names;
    rocksdb::DBOptions db_options;
    if (!rocksdb::DB::ListColumnFamilies(db_options, path, &names).ok()) continue;  // partition never used
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(db_options, path, cfs, &handles, &raw);
    if (!s.ok()) {
      std::fprintf(stderr, "verifier: %s: %s\n", path.c_str(), s.ToString().c_str());
      return 1;
    }
    std::unique_ptr<rocksdb::DB> db(raw);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), db->DefaultColumnFamily()));
    for (it->Seek("applied/"); it->Valid() && it->key().starts_with("applied/"); it->Next()) {
      const std::string key = it->key().ToString();  // applied/<event>/<token>
      const std::string event = key.substr(8, key.rfind('/') - 8);
      const std::string value = it->value().ToString();  // <account>:<amount>
      applications[event]++;
      totals[value.substr(0, value.find(':'))] += std::stoll(value.substr(value.find(':') + 1));
    }
    it.reset();
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  long doubled = 0;
  for (const auto& [event, n] : applications) {
    if (n != 1) {
      ++doubled;
      if (doubled <= 5) std::printf("  event %s applied %d times\n", event.c_str(), n);
    }
  }
  bool totals_ok = totals.size() == expected_totals.size();
  for (const auto& [account, total] : expected_totals) {
    if (totals[account] != total) {
      totals_ok = false;
      std::printf("  %s: ledger %lld, expected %lld\n", account.c_str(), totals[account], total);
    }
  }
  const long long distinct = static_cast<long long>(applications.size());
  std::printf("distinct events applied: %lld of %lld expected\n", distinct, expected_distinct);
  std::printf("events applied more than once: %ld\n", doubled);
  std::printf("account totals: %s\n", totals_ok ? "match" : "MISMATCH");
  const bool ok = distinct == expected_distinct && doubled == 0 && totals_ok;
  std::printf("exactly once: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
