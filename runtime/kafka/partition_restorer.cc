#include "runtime/kafka/partition_restorer.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "idem/kafka.h"

namespace idem::kafka {
namespace {

// Runs a blocking librdkafka call in slices of at most 200 ms until it answers something other than a
// timeout, the job is cancelled (its partition revoked: the member may be closing, and a call on its
// consumer would wait until the whole timeout), or `timeout` passes.
rd_kafka_resp_err_t Sliced(const RestoreJob& job, absl::Duration timeout,
                           const std::function<rd_kafka_resp_err_t(int slice_ms)>& call) {
  const auto end = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(timeout);
  for (;;) {
    const rd_kafka_resp_err_t err = call(200);
    if (err != RD_KAFKA_RESP_ERR__TIMED_OUT) return err;
    if (job.cancel) return RD_KAFKA_RESP_ERR__DESTROY;
    if (std::chrono::steady_clock::now() >= end) return err;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PartitionRestorer>> PartitionRestorer::Create(
    Config config, PartitionSet* set, rd_kafka_t* group, ChangelogProducer* producer,
    std::function<void(std::string_view)> log) {
  std::unique_ptr<PartitionRestorer> r(new PartitionRestorer());
  r->config_ = std::move(config);
  r->set_ = set;
  r->group_ = group;
  r->producer_ = producer;
  r->log_ = std::move(log);
  if (!r->config_.changelog_topic.empty()) {
    // A reader outside the group: it assigns changelog partitions itself and never commits. A read
    // before the log's start is an error, never a silent jump to what is left.
    Settings settings = {
        {"bootstrap.servers", r->config_.bootstrap_servers},
        {"group.id", "idem-changelog-reader"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
        {"auto.offset.reset", "error"},
        {"reconnect.backoff.max.ms", "1000"},
        // A restore waits on the log's end (its own claim): the broker should answer at once, not hold
        // an empty fetch for its default 500 ms.
        {"fetch.wait.max.ms", "10"},
    };
    settings.insert(settings.end(), r->config_.reader_settings.begin(), r->config_.reader_settings.end());
    absl::StatusOr<Conf> conf = MakeConf(settings);
    if (!conf.ok()) return conf.status();
    absl::StatusOr<Client> reader = MakeClient(RD_KAFKA_CONSUMER, *std::move(conf));
    if (!reader.ok()) return reader.status();
    r->reader_ = *std::move(reader);
    rd_kafka_poll_set_consumer(r->reader_.get());
  }
  PartitionRestorer* self = r.get();
  r->thread_ = std::thread([self] { self->Loop(); });
  return r;
}

PartitionRestorer::~PartitionRestorer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    for (auto& job : queue_) job->cancel = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (reader_ != nullptr) rd_kafka_consumer_close(reader_.get());
}

void PartitionRestorer::Submit(std::shared_ptr<RestoreJob> job) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(std::move(job));
  cv_.notify_all();
}

void PartitionRestorer::Await(const RestoreJob& job) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return job.done.load(); });
}

void PartitionRestorer::Loop() {
  for (;;) {
    std::shared_ptr<RestoreJob> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = queue_.front();
      queue_.pop_front();
    }
    if (job->cancel) {
      job->status = absl::CancelledError("revoked before its restore began");
    } else {
      Run(*job);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job->done = true;
    }
    cv_.notify_all();
  }
}

void PartitionRestorer::Run(RestoreJob& job) {
  // What the member knows before it reads: where the group says processing resumes (with what the
  // commit recorded of the log), its local copy, the changelog's watermarks. The plan is the
  // partition layer's (idem/partition_owner.h); this side only reads and writes Kafka.
  RestoreFacts facts;
  {
    PartitionList list = OnePartition(config_.input_topic, job.partition, RD_KAFKA_OFFSET_INVALID);
    const rd_kafka_resp_err_t err =
        Sliced(job, config_.timeout, [&](int ms) { return rd_kafka_committed(group_, list.get(), ms); });
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      job.status = KafkaError(err, "reading the committed offset");
      return;
    }
    const rd_kafka_topic_partition_t& tp = list->elems[0];
    job.committed = tp.offset;
    facts.position_committed = tp.offset >= 0;
    if (tp.metadata != nullptr && tp.metadata_size > 0) {
      facts.committed = DecodeCommitMetadata(std::string_view(static_cast<const char*>(tp.metadata), tp.metadata_size));
    }
    if (facts.committed) job.pointer = facts.committed->snapshot;
  }
  for (LocalCopy& c : set_->LocalCopies()) {
    if (c.layout.name == job.layout.name) facts.copy = std::move(c);
  }
  facts.has_changelog = !config_.changelog_topic.empty();
  facts.may_use_copy = job.claim_it;
  facts.from_log_start = job.from_log_start;

  if (!facts.has_changelog) {
    const RestorePlan plan = *PlanRestore(job.layout, facts);  // never refused without a changelog
    job.how = plan.Describe();
    job.status = absl::OkStatus();
    if (plan.from == RestorePlan::From::kEmpty) {
      absl::StatusOr<std::unique_ptr<PartitionRestore>> restore = PartitionRestore::Begin(set_, job.layout, plan);
      job.status = restore.ok() ? (*restore)->Finish() : restore.status();
    }
    job.claim = NextClaim(plan.copy_claim);
    return;
  }

  auto plan = [&]() -> absl::StatusOr<RestorePlan> {
    const rd_kafka_resp_err_t err = Sliced(job, config_.timeout, [&](int ms) {
      return rd_kafka_query_watermark_offsets(reader_.get(), config_.changelog_topic.c_str(), job.partition,
                                              &facts.log_start, &facts.log_end, ms);
    });
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, "reading the changelog's watermarks");
    absl::StatusOr<RestorePlan> planned = PlanRestore(job.layout, facts);
    if (!planned.ok()) {
      return absl::Status(planned.status().code(), absl::StrCat("changelog ", config_.changelog_topic, "/",
                                                                job.partition, ": ", planned.status().message()));
    }
    return planned;
  };
  absl::StatusOr<RestorePlan> planned = plan();
  if (!planned.ok()) {
    job.status = planned.status();
    return;
  }
  if (planned->from == RestorePlan::From::kLocalCopy) {
    const absl::Status s = Replay(job, *planned);
    if (s.ok() || job.cancel || job.claim_lost) {
      job.caught_up = s.ok();
      job.how = planned->Describe();
      job.status = s;
      return;
    }
    if (log_) log_(absl::StrCat(job.layout.name, ": local copy not used (", s.ToString(), "); restoring"));
    // The refused copy was dropped (it still proves the log's end it noted); the watermarks may have
    // moved on.
    facts.may_use_copy = false;
    planned = plan();
    if (!planned.ok()) {
      job.status = planned.status();
      return;
    }
  }
  job.status = Replay(job, *planned);
  job.how = planned->Describe();
}

absl::Status PartitionRestorer::Replay(RestoreJob& job, const RestorePlan& plan) {
  absl::StatusOr<std::unique_ptr<PartitionRestore>> began = PartitionRestore::Begin(set_, job.layout, plan);
  if (!began.ok()) return began.status();
  PartitionRestore& restore = **began;
  if (absl::Status s = ReadRange(job, restore, plan.read_from, plan.read_until); !s.ok()) return s;
  if (job.claim_it) {
    auto waiter = std::make_shared<DeliveryWaiter>();
    if (absl::Status s =
            producer_->Produce(config_.changelog_topic, job.partition, EncodeChangelogRecord(restore.Claim()),
                               job.track, RecordKind::kClaim, waiter);
        !s.ok()) {
      return s;
    }
    std::optional<absl::StatusOr<int64_t>> acked;
    for (const auto end = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(config_.timeout);
         !acked && std::chrono::steady_clock::now() < end;) {
      acked = waiter->Wait(absl::Milliseconds(200));
      if (!acked && job.cancel) return absl::CancelledError("revoked while its claim was in flight");
    }
    if (!acked) return absl::UnavailableError("the changelog did not acknowledge the claim in time");
    const absl::StatusOr<int64_t>& offset = *acked;
    if (!offset.ok()) return offset.status();
    // What others wrote between the end we read to and our claim counts before it.
    if (absl::Status s =
            ReadRange(job, restore, std::max(restore.replayer().last_offset() + 1, plan.read_until), *offset + 1);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = restore.Claimed(*offset); !s.ok()) {
      job.claim_lost = s.code() == absl::StatusCode::kAborted;
      return s;
    }
  }
  job.batches_fenced = restore.replayer().batches_fenced();
  job.batches_after_gap = restore.replayer().batches_after_gap();
  if (absl::Status s = restore.Finish(); !s.ok()) return s;
  job.claim = restore.claim();
  job.claim_offset = restore.claim_offset();
  return absl::OkStatus();
}

absl::Status PartitionRestorer::ReadRange(RestoreJob& job, PartitionRestore& restore, int64_t from, int64_t until) {
  if (from >= until) return absl::OkStatus();
  PartitionList list = OnePartition(config_.changelog_topic, job.partition, from);
  if (rd_kafka_resp_err_t err = rd_kafka_assign(reader_.get(), list.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return KafkaError(err, "assigning the changelog partition");
  }
  struct Unassign {
    rd_kafka_t* rk;
    ~Unassign() { rd_kafka_assign(rk, nullptr); }
  } unassign{reader_.get()};
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(config_.timeout);
  int64_t next = from;
  while (next < until) {
    if (job.cancel) return absl::CancelledError("revoked during its restore");
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::UnavailableError(absl::StrCat("reading changelog ", config_.changelog_topic, "/", job.partition,
                                                 ": offset ", next, " of ", until, " not reached in time"));
    }
    Message m(rd_kafka_consumer_poll(reader_.get(), 100));
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m->offset >= until) break;
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const absl::Status s = KafkaError(
          m->err, absl::StrCat("reading changelog ", config_.changelog_topic, "/", job.partition, " at offset ", next));
      if (s.code() == absl::StatusCode::kDataLoss) return s;
      if (log_) log_(s.ToString());
      continue;
    }
    if (m->offset < next) continue;
    if (absl::Status s = restore.Feed(m->offset, std::string_view(static_cast<const char*>(m->payload), m->len));
        !s.ok()) {
      return s;
    }
    next = m->offset + 1;
    job.log_bytes += m->len;
  }
  return absl::OkStatus();
}

}  // namespace idem::kafka
