#include "runtime/kafka/kafka_client.h"

#include "absl/strings/str_cat.h"
#include "util/status_util.h"

namespace idem::kafka {

absl::StatusOr<Conf> MakeConf(const Settings& settings) {
  Conf conf(rd_kafka_conf_new());
  char error[512];
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("librdkafka setting ", name, "=", value, ": ", error));
    }
  }
  return conf;
}

absl::StatusOr<Client> MakeClient(rd_kafka_type_t type, Conf conf) {
  char error[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), error, sizeof error);
  if (rk == nullptr) return absl::InvalidArgumentError(absl::StrCat("creating a Kafka client: ", error));
  (void)conf.release();  // rd_kafka_new took it
  return Client(rk);
}

absl::Status KafkaError(rd_kafka_resp_err_t err, std::string_view what) {
  const std::string message = absl::StrCat(util::ToAbsl(what), ": ", rd_kafka_err2str(err));
  switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR: return absl::OkStatus();
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR: return absl::UnavailableError(message);
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: return absl::NotFoundError(message);
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET: return absl::DataLossError(message);
    default: return absl::InternalError(message);
  }
}

PartitionList OnePartition(const std::string& topic, int32_t partition, int64_t offset) {
  PartitionList list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = offset;
  return list;
}

absl::StatusOr<int> PartitionCount(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  rd_kafka_topic_t* handle = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (handle == nullptr) return absl::InvalidArgumentError(absl::StrCat("bad topic name '", topic, "'"));
  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, handle, &metadata, timeout_ms);
  rd_kafka_topic_destroy(handle);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, absl::StrCat("reading the metadata of ", topic));
  absl::StatusOr<int> count = absl::NotFoundError(absl::StrCat("topic '", topic, "' does not exist"));
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = metadata->topics[i];
    if (topic == t.topic && t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0) count = t.partition_cnt;
  }
  rd_kafka_metadata_destroy(metadata);
  return count;
}

}  // namespace idem::kafka
