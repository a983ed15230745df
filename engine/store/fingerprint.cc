#include "idem/fingerprint.h"

#include <string>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace idem {

uint64_t Fingerprint(std::string_view payload) { return XXH3_64bits(payload.data(), payload.size()); }

uint64_t FingerprintOf(std::initializer_list<std::string_view> fields) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  for (std::string_view field : fields) {
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(static_cast<uint64_t>(field.size()) >> (8 * i));
    XXH3_64bits_update(&state, length, sizeof length);
    XXH3_64bits_update(&state, field.data(), field.size());
  }
  return XXH3_64bits_digest(&state);
}

}  // namespace idem
