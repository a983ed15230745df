// Instruction counts per operation, for callgrind: each case preloads its DB, then runs `--events`
// operations inside MeasuredRegion(), the one function bench/callgrind tells callgrind to collect
// (--toggle-collect). IDs are made before the region, so the counts are the store's and RocksDB's alone.
// Run it through bench/callgrind; on its own it only prints what it did.
//
// Usage: idem_instructions --case=<name> [--events=50000] [--preload=200000]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "bench/bench_util.h"
#include "idem/store.h"
#include "rocksdb/memtablerep.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/write_batch.h"
#include "testing/workload.h"

namespace idem::bench {
namespace {

constexpr size_t kBatch = 64;
const std::string kValue(11, 'v');  // the size of an idem reservation record

// The only function callgrind collects. noinline and extern linkage keep its name in the profile.
__attribute__((noinline)) void MeasuredRegion(const std::function<void()>& work) { work(); }

std::vector<std::string> MakeIds(uint64_t first, uint64_t n) {
  IdGenerator ids(IdShape::kRandom16);
  std::vector<std::string> out(n);
  for (uint64_t i = 0; i < n; ++i) ids.Make(first + i, &out[i]);
  return out;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "idem_instructions: %s\n", what.c_str());
  std::exit(1);
}

Options StoreOptions(bool durable) {
  Options options;
  options.maintenance_interval = absl::ZeroDuration();
  options.durable_reservations = durable;
  return options;
}

void Cycle(Store& store, std::string_view id) {
  absl::StatusOr<Reservation> r = store.Reserve(id);
  if (!r.ok() || r->verdict != Verdict::kReserved) Fail("reserve: " + r.status().ToString());
  if (absl::Status s = store.Commit(id, r->token); !s.ok()) Fail("commit: " + s.ToString());
}

void CycleBatch(Store& store, const std::vector<std::string>& ids, size_t from) {
  std::vector<std::string_view> views(ids.begin() + from, ids.begin() + from + kBatch);
  std::vector<absl::StatusOr<Reservation>> reserved = store.ReserveBatch(views);
  std::vector<CommitRequest> commits(kBatch);
  for (size_t k = 0; k < kBatch; ++k) {
    if (!reserved[k].ok()) Fail("reserve batch: " + reserved[k].status().ToString());
    commits[k] = {views[k], reserved[k]->token, {}, nullptr};
  }
  for (const absl::Status& s : store.CommitBatch(commits)) {
    if (!s.ok()) Fail("commit batch: " + s.ToString());
  }
}

int Run(const std::string& name, uint64_t events, uint64_t preload) {
  Scratch dir("instructions-" + name);
  const std::vector<std::string> loaded = MakeIds(0, preload);
  const std::vector<std::string> fresh = MakeIds(1ULL << 40, events);
  events = events / kBatch * kBatch;  // whole batches for the batch cases

  if (name == "raw_put_hash_skiplist" || name == "raw_put_hash_linklist") {
    // The evaluation of a hash-bucketed memtable (issue 13): idem's column-family options with a
    // fixed 8-byte prefix extractor, keys laid out as an 8-byte hash of the ID followed by the ID.
    Options store_options = StoreOptions(false);
    rocksdb::DBOptions db_options = engine::DBOptionsFor(store_options);
    rocksdb::ColumnFamilyOptions cf_options = ColumnFamilyOptionsFor(store_options);
    cf_options.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(8));
    if (name == "raw_put_hash_skiplist") {
      cf_options.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(1 << 20));
    } else {
      cf_options.memtable_factory.reset(rocksdb::NewHashLinkListRepFactory(1 << 20));
    }
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.allow_concurrent_memtable_write = false;  // hash memtables do not support it
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()}, {"idem", cf_options}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(db_options, dir.path(), families, &handles, &raw);
    if (!s.ok()) Fail(s.ToString());
    std::unique_ptr<rocksdb::DB> db(raw);
    auto hashed = [](const std::string& id) {
      const uint64_t h = Mix64(std::hash<std::string>{}(id));
      std::string key(8, '\0');
      for (int i = 0; i < 8; ++i) key[i] = static_cast<char>(h >> (56 - 8 * i));
      return key + id;
    };
    std::vector<std::string> loaded_keys, fresh_keys;
    for (const std::string& id : loaded) loaded_keys.push_back(hashed(id));
    for (const std::string& id : fresh) fresh_keys.push_back(hashed(id));
    rocksdb::WriteOptions write_options;
    for (const std::string& key : loaded_keys) db->Put(write_options, handles[1], key, kValue).PermitUncheckedError();
    MeasuredRegion([&] {
      for (uint64_t i = 0; i < events; ++i) {
        if (!db->Put(write_options, handles[1], fresh_keys[i], kValue).ok()) Fail("put");
      }
    });
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    return 0;
  }

  if (name == "raw_put_plain" || name == "raw_put" || name == "raw_batch64" || name == "raw_get_hit") {
    std::unique_ptr<rocksdb::DB> plain;
    std::unique_ptr<RawDb> raw;
    rocksdb::DB* db;
    rocksdb::ColumnFamilyHandle* cf;
    rocksdb::WriteOptions write_options;
    if (name == "raw_put_plain") {
      if (rocksdb::Status s = OpenPlainRocksDb(dir.path(), &plain); !s.ok()) Fail(s.ToString());
      db = plain.get();
      cf = db->DefaultColumnFamily();
    } else {
      raw = std::make_unique<RawDb>(StoreOptions(false), dir.path());  // idem's DB and column family options
      if (!raw->status.ok()) Fail(raw->status.ToString());
      db = raw->db.get();
      cf = raw->cf();
    }
    for (const std::string& id : loaded) db->Put(write_options, cf, id, kValue).PermitUncheckedError();
    if (name == "raw_get_hit") {
      std::string value;
      MeasuredRegion([&] {
        for (uint64_t i = 0; i < events; ++i) {
          if (!db->Get(rocksdb::ReadOptions(), cf, loaded[Mix64(i) % preload], &value).ok()) Fail("get");
        }
      });
    } else if (name == "raw_batch64") {
      MeasuredRegion([&] {
        for (uint64_t i = 0; i < events; i += kBatch) {
          rocksdb::WriteBatch batch;
          for (size_t k = 0; k < kBatch; ++k) batch.Put(cf, fresh[i + k], kValue).PermitUncheckedError();
          if (!db->Write(write_options, &batch).ok()) Fail("write");
        }
      });
    } else {
      MeasuredRegion([&] {
        for (uint64_t i = 0; i < events; ++i) {
          if (!db->Put(write_options, cf, fresh[i], kValue).ok()) Fail("put");
        }
      });
    }
    if (raw) raw.reset();
    return 0;
  }

  const bool durable = absl::EndsWith(name, "_durable");
  const std::string base = durable ? name.substr(0, name.size() - std::strlen("_durable")) : name;
  Options options = StoreOptions(durable);
  if (base == "cycle_default" || base == "batch64_default") options = Options();  // exactly what users get
  options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Store>> opened = Store::Open(options, dir.path());
  if (!opened.ok()) Fail(opened.status().ToString());
  Store& store = **opened;
  for (uint64_t i = 0; i < preload; i += kBatch) {
    std::vector<std::string> chunk(loaded.begin() + i, loaded.begin() + std::min(preload, i + kBatch));
    for (const std::string& id : chunk) Cycle(store, id);
  }
  if (base == "cycle" || base == "cycle_default") {
    MeasuredRegion([&] {
      for (uint64_t i = 0; i < events; ++i) Cycle(store, fresh[i]);
    });
  } else if (base == "batch64" || base == "batch64_default") {
    MeasuredRegion([&] {
      for (uint64_t i = 0; i < events; i += kBatch) CycleBatch(store, fresh, i);
    });
  } else if (base == "dup_hot") {
    for (uint64_t i = 0; i < 4096; ++i) Cycle(store, fresh[i]);
    MeasuredRegion([&] {
      for (uint64_t i = 0; i < events; ++i) {
        absl::StatusOr<Reservation> r = store.Reserve(fresh[i % 4096]);
        if (!r.ok() || r->verdict != Verdict::kDuplicate) Fail("expected a duplicate");
      }
    });
  } else {
    Fail("unknown case '" + name + "'");
  }
  if (absl::Status s = store.Close(); !s.ok()) Fail(s.ToString());
  return 0;
}

}  // namespace
}  // namespace idem::bench

int main(int argc, char** argv) {
  std::string name;
  uint64_t events = 50'000, preload = 200'000;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (absl::StartsWith(arg, "--case=")) {
      name = std::string(arg.substr(7));
    } else if (absl::StartsWith(arg, "--events=")) {
      events = std::strtoull(argv[i] + 9, nullptr, 10);
    } else if (absl::StartsWith(arg, "--preload=")) {
      preload = std::strtoull(argv[i] + 10, nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: idem_instructions --case=NAME [--events=N] [--preload=N]\n");
      return 2;
    }
  }
  if (name.empty() || events < 64 || preload == 0) {
    std::fprintf(stderr, "usage: idem_instructions --case=NAME [--events=N>=64] [--preload=N>0]\n");
    return 2;
  }
  const int rc = idem::bench::Run(name, events, preload);
  std::printf("%s: %llu events after a %llu-key preload\n", name.c_str(), static_cast<unsigned long long>(events),
              static_cast<unsigned long long>(preload));
  return rc;
}
