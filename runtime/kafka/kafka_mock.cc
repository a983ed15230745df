#include "idem/kafka_mock.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>  // after rdkafka.h

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/kafka/kafka_client.h"

namespace idem {

class KafkaMockCluster::Impl {
 public:
  kafka::Client owner;  // the mock cluster lives in this client's threads
  rd_kafka_mock_cluster_t* cluster = nullptr;
  kafka::Client admin;  // a client of the cluster, for watermarks
  ~Impl() {
    admin.reset();
    if (cluster != nullptr) rd_kafka_mock_cluster_destroy(cluster);
  }
};

absl::StatusOr<std::unique_ptr<KafkaMockCluster>> KafkaMockCluster::Create(int brokers) {
  auto impl = std::make_unique<Impl>();
  absl::StatusOr<kafka::Conf> conf = kafka::MakeConf({{"log_level", "3"}});
  if (!conf.ok()) return conf.status();
  absl::StatusOr<kafka::Client> owner = kafka::MakeClient(RD_KAFKA_PRODUCER, *std::move(conf));
  if (!owner.ok()) return owner.status();
  impl->owner = *std::move(owner);
  impl->cluster = rd_kafka_mock_cluster_new(impl->owner.get(), brokers);
  if (impl->cluster == nullptr) return absl::InternalError("librdkafka could not start a mock cluster");
  std::string bootstrap = rd_kafka_mock_cluster_bootstraps(impl->cluster);
  absl::StatusOr<kafka::Conf> admin_conf = kafka::MakeConf({{"bootstrap.servers", bootstrap}});
  if (!admin_conf.ok()) return admin_conf.status();
  absl::StatusOr<kafka::Client> admin = kafka::MakeClient(RD_KAFKA_PRODUCER, *std::move(admin_conf));
  if (!admin.ok()) return admin.status();
  impl->admin = *std::move(admin);
  std::unique_ptr<KafkaMockCluster> cluster(new KafkaMockCluster(std::move(impl)));
  cluster->bootstrap_ = std::move(bootstrap);
  return cluster;
}

KafkaMockCluster::KafkaMockCluster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaMockCluster::~KafkaMockCluster() = default;

absl::Status KafkaMockCluster::CreateTopic(const std::string& name, int partitions) {
  const rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(impl_->cluster, name.c_str(), partitions, 1);
  return kafka::KafkaError(err, absl::StrCat("creating topic ", name));
}

absl::Status KafkaMockCluster::FailNextRequests(int16_t api_key, int count, int32_t error) {
  if (count <= 0) return absl::InvalidArgumentError("FailNextRequests needs a positive count");
  std::vector<rd_kafka_resp_err_t> errors(static_cast<size_t>(count), static_cast<rd_kafka_resp_err_t>(error));
  rd_kafka_mock_push_request_errors_array(impl_->cluster, api_key, errors.size(), errors.data());
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int64_t, int64_t>> KafkaMockCluster::Watermarks(const std::string& topic, int partition) {
  int64_t low = 0, high = 0;
  const rd_kafka_resp_err_t err =
      rd_kafka_query_watermark_offsets(impl_->admin.get(), topic.c_str(), partition, &low, &high, 10000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return kafka::KafkaError(err, "reading watermarks");
  return std::make_pair(low, high);
}

}  // namespace idem
