// The payload fingerprint is stored with records: its values are pinned, so a change of hash (which
// would turn every redelivery after an upgrade into a conflict) fails here first.
#include "idem/fingerprint.h"

#include "gtest/gtest.h"

namespace idem {
namespace {

TEST(FingerprintTest, ValuesArePinned) {
  EXPECT_EQ(Fingerprint("abc"), 8696274497037089104ULL);  // XXH3-64 of "abc", seed 0
  EXPECT_EQ(Fingerprint(""), Fingerprint(std::string_view()));
  EXPECT_EQ(FingerprintOf({"account-7", "100"}), 4055487265957284762ULL);
}

TEST(FingerprintTest, FieldsAreTakenWithTheirLengths) {
  EXPECT_NE(FingerprintOf({"ab", "c"}), FingerprintOf({"a", "bc"}));
  EXPECT_NE(FingerprintOf({"abc"}), FingerprintOf({"abc", ""}));
  EXPECT_NE(FingerprintOf({"abc"}), Fingerprint("abc"));
  EXPECT_EQ(FingerprintOf({"x", "y"}), FingerprintOf({"x", "y"}));
}

}  // namespace
}  // namespace idem
