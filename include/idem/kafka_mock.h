// idem/kafka_mock.h — librdkafka's in-process mock cluster, for tests and demos of Kafka consumers.
//
//   auto cluster = idem::KafkaMockCluster::Create(3);
//   cluster.value()->CreateTopic("payments", 8);
//   options.bootstrap_servers = cluster.value()->bootstrap_servers();   // also for child processes
//
// What the mock of librdkafka 2.0.2 fakes and what it does not (docs/SCALING.md, "Testing on the mock"):
// consumer groups, offset commits with metadata and their generation fencing, idempotent producers and
// broker faults are real enough to test on; a group's first join takes 3 s, a rebalance
// session.timeout.ms - 1000 ms (use session.timeout.ms=4000: lower never joins); transactions fence
// nothing; each partition keeps about 5 MiB and drops older records silently.
//
// Thread safety: the cluster runs its own threads; its methods may be called from any thread.
// The mock API is marked experimental by librdkafka (no ABI promise).
#ifndef IDEM_KAFKA_MOCK_H_
#define IDEM_KAFKA_MOCK_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace idem {

class KafkaMockCluster {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaMockCluster>> Create(int brokers = 1);
  ~KafkaMockCluster();
  KafkaMockCluster(const KafkaMockCluster&) = delete;
  KafkaMockCluster& operator=(const KafkaMockCluster&) = delete;

  // "host:port,..." of the mock's brokers, reachable over TCP from this process and its children.
  const std::string& bootstrap_servers() const { return bootstrap_; }
  absl::Status CreateTopic(const std::string& name, int partitions);
  // The next `count` requests of Kafka API `api_key` (0: Produce, 1: Fetch, 8: OffsetCommit, ...) to
  // any broker fail with the Kafka error code `error` (e.g. 87 INVALID_RECORD or 44 POLICY_VIOLATION: a
  // broker refusing a Produce for good), whichever client sends them.
  absl::Status FailNextRequests(int16_t api_key, int count, int32_t error);
  // The low and high watermarks of a partition (the first offset it still holds, and the next).
  absl::StatusOr<std::pair<int64_t, int64_t>> Watermarks(const std::string& topic, int partition);

  class Impl;

 private:
  explicit KafkaMockCluster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string bootstrap_;
};

}  // namespace idem

#endif  // IDEM_KAFKA_MOCK_H_
