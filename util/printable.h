// How idem shows bytes that may be binary (event IDs, keys) in messages and tools: printable ASCII as
// is, a backslash as \\, everything else as \xNN, long values cut. The escaping is reversible, so two
// different IDs never print alike. One escaper for the engine's errors and the tools.
#ifndef IDEM_UTIL_PRINTABLE_H_
#define IDEM_UTIL_PRINTABLE_H_

#include <cstddef>
#include <limits>
#include <string>
#include <string_view>

#include "rocksdb/slice.h"

namespace idem::util {

// `bytes` escaped, at most `shown` bytes of it (then "...").
std::string Printable(std::string_view bytes, size_t shown = 64);
// Every byte, escaped; or lowercase hex digits when `hex`.
std::string PrintableAll(std::string_view bytes, bool hex = false);
// `bytes` as a JSON string literal (quotes included): printable ASCII as is, '"' and '\\' escaped,
// every other byte as \u00NN, so that each \u00NN stands for exactly one byte (binary IDs and results
// survive a round trip: decode, then take each code point as a byte).
std::string JsonBytes(std::string_view bytes);

inline rocksdb::Slice AsSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

}  // namespace idem::util

#endif  // IDEM_UTIL_PRINTABLE_H_
