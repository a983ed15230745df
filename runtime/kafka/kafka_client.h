// librdkafka's C handles owned by RAII types, its settings built with every refusal named, and its
// errors as absl::Status. The adapter uses the C API: 2.0.2's C++ TopicPartition cannot carry the
// offset-commit metadata the snapshot pointer lives in.
#ifndef IDEM_RUNTIME_KAFKA_KAFKA_CLIENT_H_
#define IDEM_RUNTIME_KAFKA_KAFKA_CLIENT_H_

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace idem::kafka {

struct ClientDeleter {
  void operator()(rd_kafka_t* rk) const {
    if (rk != nullptr) rd_kafka_destroy(rk);
  }
};
using Client = std::unique_ptr<rd_kafka_t, ClientDeleter>;

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const {
    if (c != nullptr) rd_kafka_conf_destroy(c);
  }
};
using Conf = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    if (l != nullptr) rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const {
    if (m != nullptr) rd_kafka_message_destroy(m);
  }
};
using Message = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

using Settings = std::vector<std::pair<std::string, std::string>>;

// A configuration with `settings` applied in order; kInvalidArgument names a setting librdkafka refuses.
absl::StatusOr<Conf> MakeConf(const Settings& settings);

// A client of `type` that takes `conf` (consumed, also on failure).
absl::StatusOr<Client> MakeClient(rd_kafka_type_t type, Conf conf);

// An error of librdkafka as a Status: timeouts and transport errors are kUnavailable, the rest kInternal
// unless `code` says otherwise.
absl::Status KafkaError(rd_kafka_resp_err_t err, std::string_view what);

PartitionList OnePartition(const std::string& topic, int32_t partition, int64_t offset);

// The partition count of `topic`, read from the cluster's metadata (kNotFound: no such topic).
absl::StatusOr<int> PartitionCount(rd_kafka_t* rk, const std::string& topic, int timeout_ms);

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_KAFKA_CLIENT_H_
