// partition_markers (engine/partitions/partition_markers.h): the names a partition's families take, the
// name rules, and the marker codec, which must refuse what it cannot read rather than guess.
#include "engine/partitions/partition_markers.h"

#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace idem::engine {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::StatusIs;

TEST(PartitionMarkersTest, FamilyNamesAreRecordsFirstThenEachEffectFamilyNumbered) {
  EXPECT_EQ(FamilyNames(PartitionLayout{"orders/7", {"ledger", "x:0"}}),
            (std::vector<std::string>{"p:orders/7:0", "p:orders/7:1:ledger", "p:orders/7:2:x:0"}));
  EXPECT_EQ(FamilyNames(PartitionLayout{"a", {}}), (std::vector<std::string>{"p:a:0"}));
}

TEST(PartitionMarkersTest, OnlyARecordsFamilyIsTakenForOne) {
  EXPECT_EQ(PartitionOfRecordsFamily("p:orders/7:0"), "orders/7");
  // An effect family, whatever its own name holds, has a third ':' and is never a records family.
  for (const char* family : {"p:a:1:0", "p:a:2:x:0", "default", "p::0", "p:0", "q:a:0"}) {
    EXPECT_EQ(PartitionOfRecordsFamily(family), std::nullopt) << family;
  }
}

TEST(PartitionMarkersTest, OnlyTheSetsOwnFamilyShapesAreTakenForPartitionFamilies) {
  for (const char* family : {"p:orders/7:0", "p:a:1:ledger", "p:a:12:x:0"}) {
    EXPECT_TRUE(IsPartitionFamily(family)) << family;
  }
  for (const char* family :
       {"default", "p:", "p:a", "p:a:", "p:a:1", "p:a:1:", "p:a::x", "p:a:x:y", "p:a//b:0", "q:a:0", "p::0"}) {
    EXPECT_FALSE(IsPartitionFamily(family)) << family;
  }
}

TEST(PartitionMarkersTest, NamesThatWouldReadAsAnotherNameAreRefused) {
  for (const char* name : {"orders/7", "a", "a.b/c..d", "x y"}) {
    EXPECT_THAT(CheckPartitionName(name), IsOk()) << name;
  }
  const std::string too_long(201, 'a');
  for (const std::string& name : std::vector<std::string>{"", too_long, "a:b", "a//b", "/a", "a/", "a/./b", "..",
                                                          std::string("a\0b", 3), "a\x7f", "a\nb"}) {
    EXPECT_THAT(CheckPartitionName(name), StatusIs(absl::StatusCode::kInvalidArgument)) << name;
  }
  EXPECT_THAT(CheckLayout(PartitionLayout{"a", {"ledger", "ledger"}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckLayout(PartitionLayout{"a", {""}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckLayout(PartitionLayout{"a", {std::string("a\0b", 3)}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckLayout(PartitionLayout{"a", {"0", "x:0", "p:b:0"}}), IsOk());
}

TEST(PartitionMarkersTest, AMarkerRoundTripsAndDamageIsDataLossNeverAnotherMarker) {
  Marker marker;
  marker.state = CopyState::kClean;
  marker.claim = ClaimId{7, 3};
  marker.changelog_offset = 41;
  marker.families = {"ledger", "x:0"};
  const std::string bytes = EncodeMarker(marker);
  IDEM_ASSERT_OK_AND_ASSIGN(Marker decoded, DecodeMarker(bytes));
  EXPECT_EQ(decoded.state, CopyState::kClean);
  EXPECT_EQ(decoded.claim.ordinal, 7u);
  EXPECT_EQ(decoded.claim.claimant, 3u);
  EXPECT_EQ(decoded.changelog_offset, 41);
  EXPECT_EQ(decoded.families, marker.families);

  Marker none;  // no offset noted (-1) survives too
  IDEM_ASSERT_OK_AND_ASSIGN(Marker empty, DecodeMarker(EncodeMarker(none)));
  EXPECT_EQ(empty.changelog_offset, -1);
  EXPECT_TRUE(empty.families.empty());

  // Every truncation, an unknown version and an unknown state are refused.
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THAT(DecodeMarker(bytes.substr(0, n)).status(), StatusIs(absl::StatusCode::kDataLoss)) << n;
  }
  EXPECT_THAT(DecodeMarker(bytes + "x").status(), StatusIs(absl::StatusCode::kDataLoss));
  std::string version = bytes;
  version[0] = static_cast<char>(version[0] + 1);
  EXPECT_THAT(DecodeMarker(version).status(), StatusIs(absl::StatusCode::kDataLoss));
  for (char state : {'\0', '\5'}) {
    std::string bad = bytes;
    bad[1] = state;
    EXPECT_THAT(DecodeMarker(bad).status(), StatusIs(absl::StatusCode::kDataLoss));
  }
}

}  // namespace
}  // namespace idem::engine
