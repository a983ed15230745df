// RestoreFromChangelog (idem/kafka.h): the restore thread's work for one partition, without a claim,
// for verifiers, audits and operators.
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "idem/kafka.h"
#include "runtime/kafka/kafka_client.h"
#include "runtime/kafka/partition_restorer.h"

namespace idem {

using kafka::RestoreJob;

absl::StatusOr<KafkaRestoreResult> RestoreFromChangelog(const KafkaRestoreOptions& options, PartitionSet* set,
                                                        int32_t partition) {
  if (set == nullptr || options.bootstrap_servers.empty() || options.group_id.empty() || options.input_topic.empty() ||
      options.changelog_topic.empty()) {
    return absl::InvalidArgumentError(
        "RestoreFromChangelog needs a set, bootstrap_servers, group_id, input_topic and changelog_topic");
  }
  kafka::Settings settings = {{"bootstrap.servers", options.bootstrap_servers}, {"group.id", options.group_id}};
  settings.insert(settings.end(), options.client_config.begin(), options.client_config.end());
  absl::StatusOr<kafka::Conf> conf = kafka::MakeConf(settings);
  if (!conf.ok()) return conf.status();
  // A consumer of the group that never subscribes: it reads the group's committed offsets, no more.
  absl::StatusOr<kafka::Client> group = kafka::MakeClient(RD_KAFKA_CONSUMER, *std::move(conf));
  if (!group.ok()) return group.status();
  kafka::PartitionRestorer::Config rc;
  rc.bootstrap_servers = options.bootstrap_servers;
  rc.input_topic = options.input_topic;
  rc.changelog_topic = options.changelog_topic;
  rc.reader_settings = options.client_config;
  rc.timeout = options.timeout;
  absl::StatusOr<std::unique_ptr<kafka::PartitionRestorer>> restorer =
      kafka::PartitionRestorer::Create(rc, set, group->get(), nullptr, nullptr);
  if (!restorer.ok()) return restorer.status();
  auto job = std::make_shared<RestoreJob>();
  job->partition = partition;
  job->layout = PartitionLayout{absl::StrCat(options.input_topic, "/", partition), options.effect_families};
  job->claim_it = false;
  job->from_log_start = options.from_log_start;
  (*restorer)->Submit(job);
  (*restorer)->Await(*job);
  restorer->reset();
  rd_kafka_consumer_close(group->get());
  if (!job->status.ok()) return job->status;
  KafkaRestoreResult result;
  result.how = job->how;
  result.claim = job->claim;
  result.committed = job->committed;
  result.batches_fenced = job->batches_fenced;
  result.changelog_bytes = job->log_bytes;
  return result;
}

}  // namespace idem
