// LEB128 varints (RocksDB's and protobuf's encoding), for idem's own byte formats: the changelog's
// records and a partition set's markers.
//
// Thread safety: pure functions.
#ifndef IDEM_UTIL_VARINT_H_
#define IDEM_UTIL_VARINT_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace idem::util {

inline void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Reads one varint from the front of *in. false (and *in unusable) when it is truncated or does not
// fit 64 bits.
inline bool GetVarint(std::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift <= 63; shift += 7) {
    if (in->empty()) return false;
    const uint8_t b = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    if (shift == 63 && b > 1) return false;
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace idem::util

#endif  // IDEM_UTIL_VARINT_H_
