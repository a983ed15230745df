// The Kafka system's stateful consumer: deposits keyed by account (so an account's events share a
// partition), each carrying its event ID in the `idem-id` header; per-account balances in the
// partition-local family "balances" and, to make a second application visible, a count per event ID in
// "applied". Shared by the demo (examples/kafka/demo.cc), the Kafka benchmark and the Kafka tests.
#ifndef IDEM_TESTING_KAFKA_LEDGER_H_
#define IDEM_TESTING_KAFKA_LEDGER_H_

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "idem/partition_set.h"
#include "rocksdb/db.h"

namespace idem::ledger {

inline const std::vector<std::string>& Families() {
  static const std::vector<std::string> families = {"balances", "applied"};
  return families;
}

struct Deposit {
  std::string id;       // the event ID
  std::string account;  // the message key
  int64_t amount = 0;
};

// The deposits of a run: `n` distinct events over `accounts` accounts, the same list every time.
inline std::vector<Deposit> Deposits(int n, int accounts, int first = 0) {
  std::vector<Deposit> out;
  out.reserve(n);
  for (int i = first; i < first + n; ++i) {
    out.push_back({absl::StrCat("evt-", i), absl::StrCat("acct-", i % accounts), (i % 97) + 1});
  }
  return out;
}

// The handler: balance += amount (reading through the view, which sees the batch's earlier events);
// applied[id] += 1.
inline KafkaHandler Handler() {
  return [](const KafkaMessage& m, const EventContext& ctx, KafkaPartitionView& view) -> absl::StatusOr<std::string> {
    int64_t amount = 0;
    if (!absl::SimpleAtoi(absl::string_view(m.value.data(), m.value.size()), &amount)) {
      return absl::InvalidArgumentError("a deposit's value is its amount");
    }
    const std::string account(m.key);
    absl::StatusOr<std::optional<std::string>> balance = view.Get(1, account);
    if (!balance.ok()) return balance.status();
    int64_t b = 0;
    if (*balance && !absl::SimpleAtoi(**balance, &b)) return absl::DataLossError("a balance does not parse");
    absl::StatusOr<std::optional<std::string>> applied = view.Get(2, ctx.event_id);
    if (!applied.ok()) return applied.status();
    int64_t times = 0;
    if (*applied && !absl::SimpleAtoi(**applied, &times)) return absl::DataLossError("a count does not parse");
    ctx.effects->Put(view.family(1), account, std::to_string(b + amount));
    ctx.effects->Put(view.family(2), std::string(ctx.event_id), std::to_string(times + 1));
    return std::string("ok");
  };
}

// Produces the deposits (each `duplicate_every`-th twice, as a producer's retry would), with retries.
inline absl::Status Produce(const std::string& bootstrap, const std::string& topic,
                            const std::vector<Deposit>& deposits, int duplicate_every = 0) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : std::vector<std::pair<const char*, std::string>>{{"bootstrap.servers", bootstrap},
                                                                             {"enable.idempotence", "true"},
                                                                             {"linger.ms", "5"},
                                                                             {"message.send.max.retries", "1000"}}) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(error);
    }
  }
  rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
  if (p == nullptr) return absl::InternalError(error);
  auto send = [&](const Deposit& d) {
    const std::string value = std::to_string(d.amount);
    for (;;) {
      const rd_kafka_resp_err_t err =
          rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(d.account.data(), d.account.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_HEADER("idem-id", d.id.data(), static_cast<ssize_t>(d.id.size())),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return err;
      rd_kafka_poll(p, 10);
    }
  };
  int n = 0;
  for (const Deposit& d : deposits) {
    if (rd_kafka_resp_err_t err = send(d); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_destroy(p);
      return absl::InternalError(rd_kafka_err2str(err));
    }
    if (duplicate_every > 0 && ++n % duplicate_every == 0) send(d);
    rd_kafka_poll(p, 0);
  }
  const rd_kafka_resp_err_t flushed = rd_kafka_flush(p, 30000);
  rd_kafka_destroy(p);
  return flushed == RD_KAFKA_RESP_ERR_NO_ERROR ? absl::OkStatus() : absl::UnavailableError("produce: flush timed out");
}

struct State {
  std::map<std::string, int64_t> balances;
  std::map<std::string, int64_t> applied;  // event ID -> times applied
};

inline std::map<std::string, std::string> Contents(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  std::map<std::string, std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) out[it->key().ToString()] = it->value().ToString();
  return out;
}

// Reads a clean local copy of `partition` (activated and deactivated again, kept).
inline absl::StatusOr<State> ReadCopy(PartitionSet* set, const std::string& input_topic, int32_t partition) {
  const PartitionLayout layout{absl::StrCat(input_topic, "/", partition), Families()};
  ActivateOptions a;
  a.use_local_copy = true;
  absl::StatusOr<Partition*> p = set->Activate(layout, a);
  if (!p.ok()) return p.status();
  State state;
  for (const auto& [k, v] : Contents(set->db(), (*p)->family(1))) {
    int64_t n = 0;
    if (absl::SimpleAtoi(v, &n)) state.balances[k] = n;
  }
  for (const auto& [k, v] : Contents(set->db(), (*p)->family(2))) {
    int64_t n = 0;
    if (absl::SimpleAtoi(v, &n)) state.applied[k] = n;
  }
  if (absl::Status s = set->Deactivate(layout.name, KeepLocalCopy::kKeep); !s.ok()) return s;
  return state;
}

// What the verifier concludes about a set of partitions' states against the deposits produced.
struct Verdict {
  int64_t missing = 0;        // events never applied
  int64_t applied_twice = 0;  // events applied more than once
  int64_t unknown = 0;        // applied events nobody produced
  int64_t wrong_balances = 0;
  bool ok() const { return missing == 0 && applied_twice == 0 && unknown == 0 && wrong_balances == 0; }
  std::string ToString() const {
    return absl::StrCat("missing ", missing, ", applied twice ", applied_twice, ", unknown ", unknown,
                        ", wrong balances ", wrong_balances);
  }
};

inline Verdict Verify(const std::vector<Deposit>& deposits, const std::vector<State>& partitions) {
  std::map<std::string, int64_t> expected_balance;
  std::map<std::string, int64_t> applied;
  std::map<std::string, int64_t> balance;
  for (const Deposit& d : deposits) expected_balance[d.account] += d.amount;
  for (const State& s : partitions) {
    for (const auto& [id, n] : s.applied) applied[id] += n;
    for (const auto& [account, b] : s.balances) balance[account] += b;
  }
  Verdict v;
  std::map<std::string, bool> produced;
  for (const Deposit& d : deposits) {
    produced[d.id] = true;
    auto it = applied.find(d.id);
    if (it == applied.end()) {
      ++v.missing;
    } else if (it->second > 1) {
      ++v.applied_twice;
    }
  }
  for (const auto& [id, n] : applied) {
    if (produced.count(id) == 0) ++v.unknown;
  }
  for (const auto& [account, b] : expected_balance) {
    if (balance[account] != b) ++v.wrong_balances;
  }
  return v;
}

// The group's committed offsets, by partition (RD_KAFKA_OFFSET_INVALID: none), read by a consumer of
// the group that never joins it.
inline std::vector<int64_t> Committed(const std::string& bootstrap, const std::string& group, const std::string& topic,
                                      int partitions) {
  std::vector<int64_t> out(partitions, RD_KAFKA_OFFSET_INVALID);
  char error[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  if (rk == nullptr) return out;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  if (rd_kafka_committed(rk, list, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < list->cnt; ++i) out[list->elems[i].partition] = list->elems[i].offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return out;
}

inline bool AllCommitted(KafkaMockCluster* cluster, const std::string& group, const std::string& topic,
                         int partitions) {
  const std::vector<int64_t> committed = Committed(cluster->bootstrap_servers(), group, topic, partitions);
  for (int p = 0; p < partitions; ++p) {
    absl::StatusOr<std::pair<int64_t, int64_t>> w = cluster->Watermarks(topic, p);
    if (!w.ok() || committed[p] < w->second) return false;
  }
  return true;
}

// The options that restore the ledger's partitions from its changelog (RestoreFromChangelog).
inline KafkaRestoreOptions RestoreOptions(const std::string& bootstrap, const std::string& group = "ledger",
                                          const std::string& input = "deposits",
                                          const std::string& changelog = "deposits-changelog") {
  KafkaRestoreOptions r;
  r.bootstrap_servers = bootstrap;
  r.group_id = group;
  r.input_topic = input;
  r.changelog_topic = changelog;
  r.effect_families = Families();
  return r;
}

// Produces `deposits` in chunks of `chunk`, `pause_ms` apart, each `duplicate_every`-th twice: a stream
// that goes on while members come and go. Sets *done at the end; a failure is reported on stderr.
inline std::thread Stream(const std::string& bootstrap, const std::string& topic, const std::vector<Deposit>& deposits,
                          size_t chunk, int pause_ms, int duplicate_every, std::atomic<bool>* done) {
  return std::thread([=, &deposits] {
    for (size_t i = 0; i < deposits.size(); i += chunk) {
      std::vector<Deposit> part(deposits.begin() + i, deposits.begin() + std::min(deposits.size(), i + chunk));
      if (absl::Status s = Produce(bootstrap, topic, part, duplicate_every); !s.ok()) {
        std::fprintf(stderr, "producer: %s\n", s.ToString().c_str());
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    }
    *done = true;
  });
}

// Every partition restored from the changelog (as a new owner would, without claiming) into a fresh set
// at `dir`, and read. A partition that does not restore is left out (and reported on stderr).
inline std::vector<State> RestoreAll(KafkaMockCluster* cluster, const std::string& dir, int partitions,
                                     const std::string& group = "ledger", const std::string& input = "deposits",
                                     const std::string& changelog = "deposits-changelog",
                                     uint64_t* batches_fenced = nullptr, bool from_log_start = false) {
  std::vector<State> out;
  auto set = PartitionSet::Open(PartitionSetOptions(), dir);
  if (!set.ok()) return out;
  KafkaRestoreOptions r = RestoreOptions(cluster->bootstrap_servers(), group, input, changelog);
  r.from_log_start = from_log_start;
  for (int p = 0; p < partitions; ++p) {
    absl::StatusOr<KafkaRestoreResult> restored = RestoreFromChangelog(r, set->get(), p);
    if (!restored.ok()) {
      std::fprintf(stderr, "verifier: partition %d: %s\n", p, restored.status().ToString().c_str());
      continue;
    }
    if (batches_fenced != nullptr) *batches_fenced += restored->batches_fenced;
    absl::StatusOr<State> state = ReadCopy(set->get(), input, p);
    if (state.ok()) out.push_back(*std::move(state));
  }
  (*set)->Close().IgnoreError();
  return out;
}

}  // namespace idem::ledger

#endif  // IDEM_TESTING_KAFKA_LEDGER_H_
