#include "testing/workload.h"

namespace idem::bench {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendUuid(uint64_t hi, uint64_t lo, std::string* out) {
  char buf[36];
  int p = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) buf[p++] = '-';
    const uint8_t byte = static_cast<uint8_t>(i < 8 ? hi >> (56 - 8 * i) : lo >> (56 - 8 * (i - 8)));
    buf[p++] = kHex[byte >> 4];
    buf[p++] = kHex[byte & 15];
  }
  out->append(buf, 36);
}

}  // namespace

std::string_view ShapeName(IdShape shape) {
  switch (shape) {
    case IdShape::kRandom16: return "random16";
    case IdShape::kUuidV4: return "uuid4";
    case IdShape::kUuidV7: return "uuid7";
    case IdShape::kTopicPartitionOffset: return "tpo";
  }
  return "?";
}

bool ParseShape(std::string_view name, IdShape* shape) {
  for (IdShape s : {IdShape::kRandom16, IdShape::kUuidV4, IdShape::kUuidV7, IdShape::kTopicPartitionOffset}) {
    if (name == ShapeName(s)) {
      *shape = s;
      return true;
    }
  }
  return false;
}

void IdGenerator::Make(uint64_t index, std::string* out) const {
  out->clear();
  // Distinct seeds give disjoint streams: the seed moves the start by a huge odd multiple.
  const uint64_t base = seed_ * 0x9E3779B97F4A7C15ULL;
  const uint64_t a = Mix64(base + index * 2);
  const uint64_t b = Mix64(base + index * 2 + 1);
  switch (shape_) {
    case IdShape::kRandom16:
      for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(a >> (8 * i)));
      for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(b >> (8 * i)));
      break;
    case IdShape::kUuidV4: AppendUuid((a & ~0xF000ULL) | 0x4000ULL, (b & ~(3ULL << 62)) | (2ULL << 62), out); break;
    case IdShape::kUuidV7: {
      // 48-bit millisecond timestamp that grows with the index (1000 events per ms), then random bits.
      const uint64_t ms = 1'700'000'000'000ULL + index / 1000;
      const uint64_t hi = (ms << 16) | 0x7000ULL | ((index % 1000) & 0x0FFFULL);
      AppendUuid(hi, (b & ~(3ULL << 62)) | (2ULL << 62), out);
      break;
    }
    case IdShape::kTopicPartitionOffset: {
      const uint64_t partition = index % 12;
      const uint64_t offset = index / 12;
      out->append("orders-");
      out->append(std::to_string(partition));
      out->push_back('-');
      out->append(std::to_string(offset));
      break;
    }
  }
}

}  // namespace idem::bench
