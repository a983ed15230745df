// Writes N events to the partitioned stream, and re-sends a share of them with the same event ID and
// payload, as a producer retrying after a timeout does. Records what a correct ledger must show in
// the hash events:expected (distinct events, and the total per account).
// Usage: producer --port=P [--events=N] [--partitions=2] [--resend=0.2] [--accounts=10] [--poison=0]
#include <cstdio>
#include <map>
#include <string>

#include "examples/redis_streams/layout.h"
#include "idem/redis_streams.h"
#include "testing/flags.h"

using idem::RedisConnection;

int main(int argc, char** argv) {
  CLI::App app{"Produces account events into partition streams, with redeliveries and poison events",
               "stream_producer"};
  int port = 6379, partitions = 2;
  long events = 1000, accounts = 10, poison = 0;
  double resend = 0.2;
  app.add_option("--port", port, "Redis port");
  app.add_option("--events", events, "distinct events");
  app.add_option("--partitions", partitions, "partition streams");
  app.add_option("--resend", resend, "share of events sent again (an at-least-once producer)");
  app.add_option("--accounts", accounts, "accounts the events credit");
  app.add_option("--poison", poison, "events no handler can process (dead-lettered)");
  if (const int exit_code = idem::flags::Parse(app, argc, argv); exit_code >= 0) return exit_code;
  RedisConnection redis("127.0.0.1", port);
  if (!redis.ok()) {
    std::fprintf(stderr, "producer: cannot connect to redis on port %d: %s\n", port, redis.error().c_str());
    return 1;
  }
  for (int p = 0; p < partitions; ++p) {
    // The group exists before the first event, so consumers see every event ("0"), not just new ones.
    redis.Command({"XGROUP", "CREATE", idem::example::StreamName(p), idem::example::kGroup, "0", "MKSTREAM"});
  }
  std::map<std::string, long long> expected;  // account -> total
  long sent = 0, resent = 0;
  uint64_t rng = 42;
  auto next = [&rng] {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng >> 33;
  };
  for (long i = 0; i < events; ++i) {
    const std::string id = "evt-" + std::to_string(i);
    const std::string account = "acct-" + std::to_string(i % accounts);
    const std::string amount = std::to_string(1 + static_cast<long>(next() % 1000));
    expected[account] += std::stoll(amount);
    const std::string stream = idem::example::StreamName(idem::example::PartitionOf(id, partitions));
    const int copies = (static_cast<double>(next() % 10000) / 10000.0) < resend ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      auto reply = redis.Command({"XADD", stream, "*", "event_id", id, "account", account, "amount", amount});
      if (!reply || reply->type == REDIS_REPLY_ERROR) {
        std::fprintf(stderr, "producer: XADD failed\n");
        return 1;
      }
      ++sent;
      resent += c;
    }
  }
  // Poison: events the consumers must dead-letter without stopping (no ID; an ID over the limit; an
  // amount the handler rejects). They are not part of the expected ledger.
  for (long i = 0; i < poison; ++i) {
    const std::string stream = idem::example::StreamName(static_cast<int>(i % partitions));
    redis.Command({"XADD", stream, "*", "account", "acct-0", "amount", "5"});
    redis.Command({"XADD", stream, "*", "event_id", std::string(600, 'x'), "account", "acct-0", "amount", "5"});
    redis.Command({"XADD", stream, "*", "event_id", "poison-" + std::to_string(i), "account", "acct-0", "amount",
                   "not-a-number"});
    sent += 3;
  }
  std::vector<std::string> hset = {"HSET",
                                   idem::example::kExpected,
                                   "distinct",
                                   std::to_string(events),
                                   "deliveries_sent",
                                   std::to_string(sent),
                                   "resent",
                                   std::to_string(resent),
                                   "poison",
                                   std::to_string(poison * 3)};
  for (const auto& [account, total] : expected) {
    hset.push_back("total:" + account);
    hset.push_back(std::to_string(total));
  }
  redis.Command(hset);
  std::printf("produced %ld events as %ld messages (%ld re-sent with the same ID, %ld poison)\n", events, sent, resent,
              poison * 3);
  return 0;
}
