#include "runtime/kafka/partition_restorer.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "idem/kafka.h"

namespace idem::kafka {
namespace {

uint64_t RandomClaimant() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}() ^
                             static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::lock_guard<std::mutex> lock(mu);
  uint64_t v = 0;
  while (v == 0) v = rng();
  return v;
}

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
  // Where the group says processing resumes, the snapshot pointer kept with it, and the highest log
  // end anyone recorded: the restore must prove the log still reaches it.
  std::optional<int64_t> pointer;
  int64_t recorded_end = 0;
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
    std::optional<CommitMetadata> metadata;
    if (tp.metadata != nullptr && tp.metadata_size > 0) {
      metadata = DecodeCommitMetadata(std::string_view(static_cast<const char*>(tp.metadata), tp.metadata_size));
    }
    if (metadata) {
      pointer = metadata->snapshot;
      recorded_end = metadata->log_end;
    } else if (tp.offset >= 0) {
      // Offsets committed with no record of the log's end (another tool, or a group that ran without
      // a changelog): something was processed, so an empty log cannot hold it.
      recorded_end = 1;
    }
    job.pointer = pointer;
  }
  std::optional<LocalCopy> copy;
  for (LocalCopy& c : set_->LocalCopies()) {
    if (c.layout.name == job.layout.name) copy = std::move(c);
  }
  // A kept copy noted the offset its claim had in the log: the log reached it.
  if (copy && copy->changelog_offset >= 0) recorded_end = std::max(recorded_end, copy->changelog_offset + 1);

  if (config_.changelog_topic.empty()) {
    // No changelog: the state is this member's own, if it has a clean copy.
    job.how = copy && copy->clean ? "local copy (no changelog)" : "empty (no changelog)";
    if (!(copy && copy->clean)) {
      if (copy) set_->DropLocalCopy(job.layout.name).IgnoreError();
      job.status = set_->Restore(job.layout, [](ChangelogReplayer::Sink*) { return absl::OkStatus(); });
    } else {
      job.status = absl::OkStatus();
    }
    job.claim = {copy ? copy->claim.ordinal + 1 : 1, RandomClaimant()};
    return;
  }

  int64_t low = 0, high = 0;
  auto watermarks = [&] {
    return Sliced(job, config_.timeout, [&](int ms) {
      return rd_kafka_query_watermark_offsets(reader_.get(), config_.changelog_topic.c_str(), job.partition, &low,
                                              &high, ms);
    });
  };
  if (rd_kafka_resp_err_t err = watermarks(); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    job.status = KafkaError(err, "reading the changelog's watermarks");
    return;
  }

  // Before anything is read or dropped: a log that ends below what was recorded (recreated, renamed,
  // truncated) would restore a state that forgot committed IDs.
  if (absl::Status s = CheckRestorable(std::nullopt, recorded_end, low, high); !s.ok()) {
    job.status = absl::DataLossError(
        absl::StrCat(job.layout.name, ": changelog ", config_.changelog_topic, "/", job.partition, ": ", s.message()));
    return;
  }
  if (job.claim_it && copy && copy->clean && copy->claim.ordinal > 0 && copy->changelog_offset >= low &&
      copy->changelog_offset <= high && copy->layout.effect_families == job.layout.effect_families &&
      (!pointer || *pointer < copy->changelog_offset)) {
    const absl::Status s = set_->CatchUp(job.layout, [&](ChangelogReplayer::Sink* sink) {
      ChangelogReplayer replayer(copy->claim, sink);
      return Replay(job, replayer, copy->changelog_offset, high, job.claim_it);
    });
    if (s.ok()) {
      job.caught_up = true;
      job.how = absl::StrCat("local copy + ", high - copy->changelog_offset, " records of changelog tail");
      job.status = s;
      return;
    }
    if (job.cancel || job.claim_lost) {
      job.status = s;
      return;
    }
    if (log_) log_(absl::StrCat(job.layout.name, ": local copy not used (", s.ToString(), "); restoring"));
    // The refused copy was dropped; the watermarks may have moved on.
    if (rd_kafka_resp_err_t err = watermarks(); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      job.status = KafkaError(err, "reading the changelog's watermarks");
      return;
    }
  }
  if (job.from_log_start) pointer.reset();
  if (absl::Status s = CheckRestorable(pointer, recorded_end, low, high); !s.ok()) {
    job.status = absl::DataLossError(absl::StrCat(job.layout.name, ": ", s.message()));
    return;
  }
  job.status = set_->Restore(job.layout, [&](ChangelogReplayer::Sink* sink) {
    ChangelogReplayer replayer(pointer ? ChangelogReplayer::Start::kSnapshot : ChangelogReplayer::Start::kLogStart,
                               sink);
    return Replay(job, replayer, pointer.value_or(0), high, job.claim_it);
  });
  job.how = pointer ? absl::StrCat("snapshot at changelog offset ", *pointer, " + tail to ", high)
                    : absl::StrCat("changelog from its start, ", high, " records");
}

absl::Status PartitionRestorer::Replay(RestoreJob& job, ChangelogReplayer& replayer, int64_t from, int64_t high,
                                       bool claim) {
  if (absl::Status s = ReadRange(job, replayer, from, high); !s.ok()) return s;
  if (claim) {
    const ClaimId mine{replayer.current_claim().ordinal + 1, RandomClaimant()};
    ChangelogRecord record;
    record.type = ChangelogRecord::Type::kClaim;
    record.claim = mine;
    auto waiter = std::make_shared<DeliveryWaiter>();
    if (absl::Status s = producer_->Produce(config_.changelog_topic, job.partition, EncodeChangelogRecord(record),
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
    if (absl::Status s = ReadRange(job, replayer, std::max(replayer.last_offset() + 1, high), *offset + 1); !s.ok()) {
      return s;
    }
    if (replayer.current_claim() != mine) {
      job.claim_lost = true;
      return absl::AbortedError(absl::StrCat("claim ", mine.ordinal, " at changelog offset ", *offset,
                                             " lost: another member claimed ordinal ", replayer.current_claim().ordinal,
                                             " first"));
    }
    job.claim = mine;
    job.claim_offset = *offset;
  } else {
    job.claim = replayer.current_claim();
  }
  job.batches_fenced = replayer.batches_fenced();
  job.batches_after_gap = replayer.batches_after_gap();
  return replayer.Finish();
}

absl::Status PartitionRestorer::ReadRange(RestoreJob& job, ChangelogReplayer& replayer, int64_t from, int64_t until) {
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
    if (absl::Status s = replayer.Feed(m->offset, std::string_view(static_cast<const char*>(m->payload), m->len));
        !s.ok()) {
      return s;
    }
    next = m->offset + 1;
    job.log_bytes += m->len;
  }
  return absl::OkStatus();
}

}  // namespace idem::kafka
