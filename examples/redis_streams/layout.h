// The example's event layout, shared by its producer, consumer and verifier: partitioned streams, the
// consumer group, the dead-letter stream, the expected totals, and the payload fingerprint.
#ifndef IDEM_EXAMPLES_REDIS_STREAMS_LAYOUT_H_
#define IDEM_EXAMPLES_REDIS_STREAMS_LAYOUT_H_

#include <cstdint>
#include <string>

#include "idem/fingerprint.h"

namespace idem::example {

inline std::string StreamName(int partition) { return "events:" + std::to_string(partition); }
inline constexpr char kGroup[] = "ledger-writers";
inline constexpr char kDeadLetters[] = "events:dead-letter";
inline constexpr char kExpected[] = "events:expected";
// idem's fingerprint hash (XXH3) for both: one well-distributed hash instead of two hand-written ones.
inline int PartitionOf(const std::string& event_id, int partitions) {
  return static_cast<int>(idem::Fingerprint(event_id) % static_cast<uint64_t>(partitions));
}
inline uint64_t Fingerprint(const std::string& account, const std::string& amount) {
  return idem::FingerprintOf({account, amount});
}

}  // namespace idem::example

#endif  // IDEM_EXAMPLES_REDIS_STREAMS_LAYOUT_H_
