// idem/fingerprint.h — a payload fingerprint for ReserveOptions::fingerprint (and the Processor's
// event fingerprint), so that callers need not write their own hash.
//
// XXH3-64 (xxhash 0.8's frozen XXH3_64bits, seed 0): fast, well distributed, and stable across releases
// and machines — fingerprints are stored with the records, so a different hash would turn every
// redelivery after an upgrade into a conflict. It detects a reused ID with another payload; it is not a
// cryptographic hash (a producer that wants to forge a collision can).
//
// Thread safety: pure functions.
#ifndef IDEM_FINGERPRINT_H_
#define IDEM_FINGERPRINT_H_

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace idem {

// The fingerprint of one payload's bytes.
uint64_t Fingerprint(std::string_view payload);

// The fingerprint of a payload made of several fields, each taken with its length, so that fields that
// concatenate alike ("ab" + "c", "a" + "bc") differ.
uint64_t FingerprintOf(std::initializer_list<std::string_view> fields);

}  // namespace idem

#endif  // IDEM_FINGERPRINT_H_
