// The workload generator shared by the benchmarks and the tools: deterministic event IDs of the shapes
// real queues produce, and a duplicate schedule. Deterministic (a pure function of a seed and an index)
// so that a benchmark can re-derive an ID instead of storing millions of them.
#ifndef IDEM_TESTING_WORKLOAD_H_
#define IDEM_TESTING_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace idem::bench {

enum class IdShape {
  kRandom16,              // 16 random bytes (binary)
  kUuidV4,                // 36-char random UUID text
  kUuidV7,                // 36-char time-ordered UUID text (ascending with the index)
  kTopicPartitionOffset,  // "orders-3-1234567": Kafka-style coordinates
};

std::string_view ShapeName(IdShape shape);
bool ParseShape(std::string_view name, IdShape* shape);

// splitmix64: a fast, well-mixed 64-bit hash.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class IdGenerator {
 public:
  explicit IdGenerator(IdShape shape, uint64_t seed = 1) : shape_(shape), seed_(seed) {}
  // The index-th ID; the same index always gives the same ID.
  void Make(uint64_t index, std::string* out) const;
  std::string Make(uint64_t index) const {
    std::string out;
    Make(index, &out);
    return out;
  }

 private:
  IdShape shape_;
  uint64_t seed_;
};

// Decides, event by event, whether the next delivery is a redelivery and of which earlier event.
// rate: share of deliveries that are duplicates; distance: how far back (in events) the original is.
class DuplicateSchedule {
 public:
  DuplicateSchedule(double rate, uint64_t distance, uint64_t seed = 7)
      : threshold_(static_cast<uint64_t>(rate * 18446744073709551615.0)), distance_(distance), seed_(seed) {}
  // For delivery number `n` with `fresh` distinct events issued so far: the event index to deliver and
  // whether it is a duplicate.
  uint64_t Next(uint64_t n, uint64_t* fresh, bool* duplicate) const {
    const uint64_t r = Mix64(seed_ ^ (n * 0x2545F4914F6CDD1DULL));
    if (*fresh > 0 && r < threshold_) {
      *duplicate = true;
      const uint64_t back = 1 + (Mix64(r) % (distance_ < *fresh ? distance_ : *fresh));
      return *fresh - back;
    }
    *duplicate = false;
    return (*fresh)++;
  }

 private:
  uint64_t threshold_;
  uint64_t distance_;
  uint64_t seed_;
};

}  // namespace idem::bench

#endif  // IDEM_TESTING_WORKLOAD_H_
