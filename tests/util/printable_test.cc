// The one escaper: reversible, so that two different IDs never print alike.
#include "util/printable.h"

#include <set>
#include <string>

#include "tests/support/test_util.h"

namespace idem::util {
namespace {

TEST(PrintableTest, DifferentIdsNeverPrintAlike) {
  const std::string with_escape_byte = std::string("evt") + '\x1b' + "in";
  const std::string with_backslash_text = "evt\\x1bin";
  EXPECT_NE(PrintableAll(with_escape_byte), PrintableAll(with_backslash_text));
  EXPECT_EQ(PrintableAll(with_escape_byte), "evt\\x1bin");
  EXPECT_EQ(PrintableAll(with_backslash_text), "evt\\\\x1bin");
  // Every one- and two-byte ID prints differently from every other.
  std::set<std::string> seen;
  for (int a = 0; a < 256; ++a) {
    for (int b = -1; b < 256; ++b) {
      std::string id(1, static_cast<char>(a));
      if (b >= 0) id.push_back(static_cast<char>(b));
      EXPECT_TRUE(seen.insert(PrintableAll(id)).second) << "collision for " << a << "," << b;
    }
  }
}

TEST(PrintableTest, LongIdsAreCutAndHexIsWhole) {
  const std::string id(100, 'a');
  EXPECT_EQ(Printable(id), std::string(64, 'a') + "...");
  EXPECT_EQ(PrintableAll("\x01\xff", /*hex=*/true), "01ff");
}

}  // namespace
}  // namespace idem::util
