// Building changelog records in tests.
#ifndef IDEM_TESTS_SUPPORT_CHANGELOG_UTIL_H_
#define IDEM_TESTS_SUPPORT_CHANGELOG_UTIL_H_

#include <cstdint>

#include "idem/changelog.h"

namespace idem::testing {

// A record of `type` by `claim` (the fields a type does not use keep their defaults).
inline ChangelogRecord Rec(ChangelogRecord::Type type, ClaimId claim, uint64_t sequence = 0, int64_t input = -1) {
  ChangelogRecord r;
  r.type = type;
  r.claim = claim;
  r.sequence = sequence;
  r.input_offset = input;
  return r;
}

}  // namespace idem::testing

#endif  // IDEM_TESTS_SUPPORT_CHANGELOG_UTIL_H_
