// The example's event layout, shared by its producer, consumer and verifier: partitioned streams, the
// consumer group, the dead-letter stream, the expected totals, and the payload fingerprint.
#ifndef IDEM_EXAMPLES_REDIS_STREAMS_LAYOUT_H_
#define IDEM_EXAMPLES_REDIS_STREAMS_LAYOUT_H_

#include <cstdint>
#include <string>

namespace idem::example {

inline std::string StreamName(int partition) { return "events:" + std::to_string(partition); }
inline constexpr char kGroup[] = "ledger-writers";
inline constexpr char kDeadLetters[] = "events:dead-letter";
inline constexpr char kExpected[] = "events:expected";
inline int PartitionOf(const std::string& event_id, int partitions) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : event_id) h = (h ^ c) * 1099511628211ULL;
  return static_cast<int>(h % static_cast<uint64_t>(partitions));
}
inline uint64_t Fingerprint(const std::string& account, const std::string& amount) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : account + "|" + amount) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace idem::example

#endif  // IDEM_EXAMPLES_REDIS_STREAMS_LAYOUT_H_
