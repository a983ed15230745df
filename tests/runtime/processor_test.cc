// The consumer runtime: outcomes, effects atomic with the marker, heartbeats, waiting, store failure.
#include "idem/processor.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "testing/fault_fs.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::FakeClock;
using ::idem::testing::Fault;
using ::idem::testing::FaultFs;
using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;

class ConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_ = std::make_shared<FaultFs>();
    env_ = testing::EnvOver(fs_);
    clock_ = std::make_shared<FakeClock>();
    options_ = ManualOptions(clock_);
    options_.env = env_.get();
    options_.durable_reservations = false;
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));
  }

  // A handler whose effect increments the event's ledger entry, counting its calls.
  Handler Ledger(std::string result = "ok") {
    return [this, result](const EventContext& ctx) -> absl::StatusOr<std::string> {
      calls_++;
      ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/" + std::string(ctx.event_id),
                       std::to_string(ctx.token));
      return result;
    };
  }
  bool Applied(const std::string& id) {
    std::string v;
    return store_->db()->Get(rocksdb::ReadOptions(), "ledger/" + id, &v).ok();
  }

  ScratchDir dir_;
  std::shared_ptr<FaultFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::shared_ptr<FakeClock> clock_;
  Options options_;
  std::unique_ptr<Store> store_;
  std::atomic<int> calls_{0};
};

TEST_F(ConsumerTest, AppliesOnceAndAnswersDuplicatesWithTheStoredResult) {
  Processor processor(store_.get());
  HandleResult first = processor.Handle({"e1"}, Ledger("receipt-1"));
  EXPECT_EQ(first.outcome, Outcome::kApplied);
  EXPECT_TRUE(first.ShouldAck());
  EXPECT_TRUE(Applied("e1"));
  HandleResult again = processor.Handle({"e1"}, Ledger("other"));
  EXPECT_EQ(again.outcome, Outcome::kDuplicate);
  EXPECT_EQ(again.result, "receipt-1");
  EXPECT_TRUE(again.ShouldAck());
  EXPECT_EQ(calls_.load(), 1);
  const ProcessorStats stats = processor.GetStats();
  EXPECT_EQ(stats.applied, 1u);
  EXPECT_EQ(stats.duplicates, 1u);
  EXPECT_EQ(stats.step_latency.count, 2u);
  EXPECT_THAT(stats.ToPrometheus(), ::testing::HasSubstr("idem_consumer_events_total{outcome=\"applied\"} 1"));
}

TEST_F(ConsumerTest, FailingHandlerReleasesAndWritesNoEffects) {
  Processor processor(store_.get());
  HandleResult failed = processor.Handle({"e"}, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
    ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/e", "half-done");
    return absl::UnavailableError("downstream timeout");
  });
  EXPECT_EQ(failed.outcome, Outcome::kRetryLater);
  EXPECT_FALSE(failed.ShouldAck());
  EXPECT_FALSE(Applied("e")) << "effects of a failed handler are never written";
  EXPECT_EQ(processor.Handle({"e"}, Ledger()).outcome, Outcome::kApplied) << "the ID was released at once";

  HandleResult thrown = processor.Handle(
      {"t"}, [](const EventContext&) -> absl::StatusOr<std::string> { throw std::runtime_error("boom"); });
  EXPECT_EQ(thrown.outcome, Outcome::kRetryLater);
}

TEST_F(ConsumerTest, PoisonInputHasClearOutcomes) {
  Processor processor(store_.get());
  EXPECT_EQ(processor.Handle({""}, Ledger()).outcome, Outcome::kInvalid);
  EXPECT_EQ(processor.Handle({std::string(options_.max_id_bytes + 1, 'x')}, Ledger()).outcome, Outcome::kInvalid);
  HandleResult rejected = processor.Handle({"bad-payload"}, [](const EventContext&) -> absl::StatusOr<std::string> {
    return absl::InvalidArgumentError("amount is not a number");
  });
  EXPECT_EQ(rejected.outcome, Outcome::kRejected);
  EXPECT_TRUE(rejected.DeadLetter());
  EXPECT_EQ(calls_.load(), 0);
  EXPECT_EQ(processor.Handle({"after-poison"}, Ledger()).outcome, Outcome::kApplied);
}

TEST_F(ConsumerTest, ReusedIdWithAnotherPayloadIsAConflict) {
  Processor processor(store_.get());
  EXPECT_EQ(processor.Handle({"e", 111}, Ledger()).outcome, Outcome::kApplied);
  EXPECT_EQ(processor.Handle({"e", 111}, Ledger()).outcome, Outcome::kDuplicate);
  HandleResult conflict = processor.Handle({"e", 222}, Ledger());
  EXPECT_EQ(conflict.outcome, Outcome::kConflict);
  EXPECT_TRUE(conflict.DeadLetter());
  EXPECT_EQ(calls_.load(), 1);
  EXPECT_EQ(processor.GetStats().conflicts, 1u);
}

TEST_F(ConsumerTest, InFlightIsRetryLaterOrWaitedFor) {
  Processor quick(store_.get());
  ProcessorOptions waiting_options;
  waiting_options.wait_in_flight = absl::Seconds(30);
  Processor waiting(store_.get(), waiting_options);
  std::atomic<bool> inside{false};
  std::atomic<bool> release{false};
  std::thread holder([&] {
    quick.Handle({"e"}, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
      inside = true;
      while (!release) absl::SleepFor(absl::Milliseconds(1));
      ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/e", "1");
      return "from-holder";
    });
  });
  while (!inside) absl::SleepFor(absl::Milliseconds(1));
  HandleResult busy = quick.Handle({"e"}, Ledger());
  EXPECT_EQ(busy.outcome, Outcome::kRetryLater);
  EXPECT_FALSE(busy.ShouldAck());
  std::thread finisher([&] {
    absl::SleepFor(absl::Milliseconds(30));
    release = true;
  });
  HandleResult waited = waiting.Handle({"e"}, Ledger());
  holder.join();
  finisher.join();
  EXPECT_EQ(waited.outcome, Outcome::kDuplicate);
  EXPECT_EQ(waited.result, "from-holder");
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(ConsumerTest, HeartbeatKeepsALongHandlersLease) {
  ProcessorOptions options;
  options.lease = options_.lease;
  options.heartbeat = absl::Milliseconds(2);
  Processor processor(store_.get(), options);
  Processor other(store_.get());
  HandleResult r = processor.Handle({"long"}, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
    const uint64_t before = processor.GetStats().heartbeats;
    for (int i = 0; i < 4; ++i) {
      clock_->Advance(options_.lease / 2);  // two whole leases pass while the handler runs
      const absl::Time real_deadline = absl::Now() + absl::Seconds(10);
      while (processor.GetStats().heartbeats <= before + i && absl::Now() < real_deadline) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      EXPECT_EQ(other.Handle({"long"}, Ledger()).outcome, Outcome::kRetryLater) << "still held after " << i;
    }
    ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/long", "1");
    return "done";
  });
  EXPECT_EQ(r.outcome, Outcome::kApplied);
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(ConsumerTest, StoreFailurePausesAndResumesByItselfWithNothingLostOrDoubled) {
  ProcessorOptions options;
  options.backoff_initial = absl::Milliseconds(1);
  options.backoff_max = absl::Milliseconds(20);
  Processor processor(store_.get(), options);
  ASSERT_EQ(processor.Handle({"a"}, Ledger()).outcome, Outcome::kApplied);

  fs_->Arm(Fault::kIoError);
  HandleResult failed = processor.Handle({"b"}, Ledger());
  EXPECT_EQ(failed.outcome, Outcome::kUnavailable);
  EXPECT_FALSE(failed.ShouldAck());
  EXPECT_FALSE(processor.healthy());
  const int calls_before = calls_.load();
  EXPECT_EQ(processor.Handle({"c"}, Ledger()).outcome, Outcome::kUnavailable);
  EXPECT_EQ(calls_.load(), calls_before) << "paused: events are not taken";
  EXPECT_THAT(processor.AwaitHealthy(absl::Milliseconds(50)), ::testing::Not(IsOk()));

  fs_->Clear();
  ASSERT_THAT(processor.AwaitHealthy(absl::Seconds(20)), IsOk());
  // The redelivered events go through; "b" is applied once whatever its failed commit did.
  HandleResult b = processor.Handle({"b"}, Ledger());
  EXPECT_TRUE(b.outcome == Outcome::kApplied || b.outcome == Outcome::kDuplicate) << OutcomeName(b.outcome);
  EXPECT_EQ(processor.Handle({"c"}, Ledger()).outcome, Outcome::kApplied);
  EXPECT_EQ(processor.Handle({"a"}, Ledger()).outcome, Outcome::kDuplicate);
  EXPECT_TRUE(Applied("a") && Applied("b") && Applied("c"));
  const ProcessorStats stats = processor.GetStats();
  EXPECT_EQ(stats.pauses, 1u);
  EXPECT_EQ(stats.resumes, 1u);
  EXPECT_GE(stats.resume_attempts, 1u);
}

TEST_F(ConsumerTest, HandleBatchMixesOutcomesInOneCommit) {
  Processor processor(store_.get());
  ASSERT_EQ(processor.Handle({"seen"}, Ledger("old")).outcome, Outcome::kApplied);
  std::vector<Event> events = {{"n1"}, {"seen"}, {""}, {"n2"}, {"n1"}, {"poison"}};
  std::vector<HandleResult> results =
      processor.HandleBatch(events, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
        if (ctx.event_id == "poison") return absl::InvalidArgumentError("bad");
        ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/" + std::string(ctx.event_id), "1");
        return "new";
      });
  ASSERT_EQ(results.size(), events.size());
  EXPECT_EQ(results[0].outcome, Outcome::kApplied);
  EXPECT_EQ(results[1].outcome, Outcome::kDuplicate);
  EXPECT_EQ(results[1].result, "old");
  EXPECT_EQ(results[2].outcome, Outcome::kInvalid);
  EXPECT_EQ(results[3].outcome, Outcome::kApplied);
  EXPECT_EQ(results[4].outcome, Outcome::kRetryLater) << "a repeat inside the batch waits for the first";
  EXPECT_EQ(results[5].outcome, Outcome::kRejected);
  EXPECT_TRUE(Applied("n1") && Applied("n2"));
  EXPECT_FALSE(Applied("poison"));
}

// A permanent failure to commit (here a result over max_result_bytes) ends the event as a dead letter and
// gives the ID back: it must not wait a lease and fail the same way forever.
TEST_F(ConsumerTest, ResultTooLargeIsADeadLetterAndReleasesTheId) {
  Processor processor(store_.get());
  const std::string huge(options_.max_result_bytes + 1, 'r');
  HandleResult r = processor.Handle({"big"}, Ledger(huge));
  EXPECT_TRUE(r.DeadLetter()) << OutcomeName(r.outcome);
  EXPECT_THAT(r.status, testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(Applied("big"));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation again, store_->Reserve("big"));
  EXPECT_EQ(again.verdict, Verdict::kReserved) << "the ID was not released";

  std::vector<Event> events = {{"big-1"}, {"fine"}};
  std::vector<HandleResult> results =
      processor.HandleBatch(events, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
        ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/" + std::string(ctx.event_id), "1");
        return ctx.event_id == "fine" ? std::string("ok") : huge;
      });
  EXPECT_TRUE(results[0].DeadLetter()) << OutcomeName(results[0].outcome);
  EXPECT_EQ(results[1].outcome, Outcome::kApplied);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation batch_again, store_->Reserve("big-1"));
  EXPECT_EQ(batch_again.verdict, Verdict::kReserved);
}

// Event::id borrows the caller's bytes; a handler that reuses that buffer must not move the commit (or
// the heartbeat) to another ID.
TEST_F(ConsumerTest, HandlerThatChangesTheCallersIdBufferCommitsTheOriginalId) {
  ProcessorOptions options;
  options.heartbeat = absl::Milliseconds(1);
  Processor processor(store_.get(), options);
  std::string buffer = "evt-AAA";
  HandleResult r = processor.Handle({buffer}, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
    buffer.replace(0, buffer.size(), "evt-BBB");  // e.g. the consumer's receive buffer, reused
    ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/x", "1");
    return "ok";
  });
  EXPECT_EQ(r.outcome, Outcome::kApplied);
  EXPECT_EQ(store_->Reserve("evt-AAA")->verdict, Verdict::kDuplicate);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation other, store_->Reserve("evt-BBB"));
  EXPECT_EQ(other.verdict, Verdict::kReserved);
  // Nothing is left for the heartbeat to renew: the reservation just made is not extended by it.
  const uint64_t beats = processor.GetStats().heartbeats;
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(processor.GetStats().heartbeats, beats);
}

// A record that no longer decodes is a dead letter (never "retry later" forever); an operator removes it
// with Store::Forget and the event can then be applied.
TEST_F(ConsumerTest, CorruptRecordIsADeadLetterAndForgetRemovesIt) {
  Processor processor(store_.get());
  ASSERT_TRUE(store_->db()
                  ->Put(rocksdb::WriteOptions(), store_->column_family(), store_->RecordKey("rotten"), "\x07garbage")
                  .ok());
  HandleResult r = processor.Handle({"rotten"}, Ledger());
  EXPECT_TRUE(r.DeadLetter()) << OutcomeName(r.outcome);
  EXPECT_EQ(r.outcome, Outcome::kCorrupt);
  EXPECT_THAT(r.status, testing::StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(calls_.load(), 0);
  EXPECT_EQ(processor.GetStats().corrupt, 1u);

  ASSERT_THAT(store_->Forget("rotten"), IsOk());
  EXPECT_THAT(store_->Forget("rotten"), testing::StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(processor.Handle({"rotten"}, Ledger()).outcome, Outcome::kApplied);
  EXPECT_TRUE(Applied("rotten"));
}

// A duplicate says which token committed it and until when it is remembered (what a response hook
// needs); an in-flight answer says when the holder's lease ends.
TEST_F(ConsumerTest, DuplicateCarriesItsTokenAndRetentionEnd) {
  Processor processor(store_.get());
  HandleResult first = processor.Handle({"evt"}, Ledger());
  ASSERT_EQ(first.outcome, Outcome::kApplied);
  HandleResult again = processor.Handle({"evt"}, Ledger());
  EXPECT_EQ(again.outcome, Outcome::kDuplicate);
  EXPECT_EQ(again.token, first.token);
  EXPECT_EQ(again.deadline, clock_->Now() + options_.ttl);
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation held, store_->Reserve("held"));
  HandleResult busy = processor.Handle({"held"}, Ledger());
  EXPECT_EQ(busy.outcome, Outcome::kRetryLater);
  EXPECT_EQ(busy.deadline, held.deadline);
}

TEST_F(ConsumerTest, HandlerFailureCanKeepTheReservationOrCommitTheFailure) {
  const Handler failing = [this](const EventContext& ctx) -> absl::StatusOr<std::string> {
    calls_++;
    ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/" + std::string(ctx.event_id), "x");
    return absl::UnavailableError("downstream timed out");
  };
  ProcessorOptions keep;
  keep.on_handler_failure = OnHandlerFailure::kKeepReserved;
  {
    Processor processor(store_.get(), keep);
    EXPECT_EQ(processor.Handle({"kept"}, failing).outcome, Outcome::kRetryLater);
    HandleResult redelivered = processor.Handle({"kept"}, Ledger());
    EXPECT_EQ(redelivered.outcome, Outcome::kRetryLater) << "still reserved until the lease ends";
    EXPECT_EQ(calls_.load(), 1);
    clock_->Advance(options_.lease + absl::Seconds(1));
    EXPECT_EQ(processor.Handle({"kept"}, Ledger()).outcome, Outcome::kApplied);
  }
  ProcessorOptions commit;
  commit.on_handler_failure = OnHandlerFailure::kCommitFailure;
  Processor processor(store_.get(), commit);
  HandleResult failed = processor.Handle({"failed"}, failing);
  EXPECT_EQ(failed.outcome, Outcome::kRejected);
  EXPECT_TRUE(failed.DeadLetter());
  EXPECT_EQ(failed.result, "failed: downstream timed out");
  EXPECT_FALSE(Applied("failed")) << "the failing handler's effects are not written";
  const int calls_before = calls_.load();
  HandleResult later = processor.Handle({"failed"}, Ledger());
  EXPECT_EQ(later.outcome, Outcome::kDuplicate);
  EXPECT_EQ(later.result, "failed: downstream timed out");
  EXPECT_EQ(calls_.load(), calls_before);
}

TEST_F(ConsumerTest, ProcessorsSharingAThreadAddOneThreadNotOneEach) {
  const int before = testing::ThreadCount();
  {
    std::vector<std::unique_ptr<Processor>> own;
    for (int i = 0; i < 8; ++i) own.push_back(std::make_unique<Processor>(store_.get()));
    EXPECT_EQ(testing::ThreadCount(), before + 8) << "a Processor without a shared thread starts one of its own";
  }
  ProcessorOptions options;
  options.thread = std::make_shared<ProcessorThread>();
  std::vector<std::unique_ptr<Processor>> shared;
  for (int i = 0; i < 32; ++i) shared.push_back(std::make_unique<Processor>(store_.get(), options));
  EXPECT_EQ(testing::ThreadCount(), before + 1);
  EXPECT_EQ(shared[7]->Handle({"x"}, Ledger()).outcome, Outcome::kApplied);
  EXPECT_EQ(shared[8]->Handle({"x"}, Ledger()).outcome, Outcome::kDuplicate);
}

TEST_F(ConsumerTest, ProcessorsSharingAThreadEachRecoverAndRenewLeases) {
  ProcessorOptions options;
  options.thread = std::make_shared<ProcessorThread>();
  options.backoff_initial = absl::Milliseconds(1);
  options.backoff_max = absl::Milliseconds(20);
  options.lease = options_.lease;
  options.heartbeat = absl::Milliseconds(2);
  Processor one(store_.get(), options), two(store_.get(), options);
  fs_->Arm(Fault::kIoError);
  EXPECT_EQ(one.Handle({"a"}, Ledger()).outcome, Outcome::kUnavailable);
  EXPECT_EQ(two.Handle({"b"}, Ledger()).outcome, Outcome::kUnavailable);
  EXPECT_FALSE(one.healthy());
  EXPECT_FALSE(two.healthy());
  fs_->Clear();
  ASSERT_THAT(one.AwaitHealthy(absl::Seconds(20)), IsOk());
  ASSERT_THAT(two.AwaitHealthy(absl::Seconds(20)), IsOk());
  EXPECT_EQ(one.GetStats().resumes, 1u);
  EXPECT_EQ(two.GetStats().resumes, 1u);
  // Heartbeats still run on the shared thread: a handler outliving two leases keeps its ID.
  HandleResult r = one.Handle({"long"}, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
    for (int i = 0; i < 4; ++i) {
      const uint64_t seen = one.GetStats().heartbeats;
      clock_->Advance(options_.lease / 2);
      EXPECT_TRUE(testing::WaitFor([&] { return one.GetStats().heartbeats > seen; }));
      EXPECT_EQ(two.Handle({"long"}, Ledger()).outcome, Outcome::kRetryLater) << "still held after " << i;
    }
    ctx.effects->Put(store_->db()->DefaultColumnFamily(), "ledger/long", "1");
    return "done";
  });
  EXPECT_EQ(r.outcome, Outcome::kApplied);
}

}  // namespace
}  // namespace idem
