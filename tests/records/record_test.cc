#include "engine/records/record.h"

#include "engine/records/record_key.h"
#include "tests/support/test_util.h"

namespace idem::engine {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::StatusIs;

// IdHash is persisted in every key of a hashed store: it must never change.
TEST(RecordKeyTest, HashIsXxh3AndNeverChanges) {
  EXPECT_EQ(IdHash("abc"), 8696274497037089104u);
  EXPECT_EQ(IdHash("order-000001"), 10125646016092839390u);
}

TEST(RecordKeyTest, KeysRoundTripAndForeignKeysAreRecognized) {
  for (const std::string& id :
       {std::string("a"), std::string("order-000001"), std::string(300, 'z'), std::string("\0\xff", 2)}) {
    const RecordKey hashed(KeyLayout::kHashed, id);
    EXPECT_EQ(hashed.view().size(), id.size() + kKeyHashBytes);
    EXPECT_EQ(IdOfKey(KeyLayout::kHashed, hashed.view()), std::optional<std::string_view>(id));
    EXPECT_EQ(IdForDisplay(hashed.view()), id);
    const RecordKey plain(KeyLayout::kPlain, id);
    EXPECT_EQ(plain.view(), id);
    EXPECT_EQ(IdOfKey(KeyLayout::kPlain, plain.view()), std::optional<std::string_view>(id));
  }
  EXPECT_EQ(IdOfKey(KeyLayout::kHashed, "short"), std::nullopt);
  EXPECT_EQ(IdOfKey(KeyLayout::kHashed, "12345678-not-its-hash"), std::nullopt);
  EXPECT_EQ(IdForDisplay("plain-id"), "plain-id");
  EXPECT_EQ(IdOfKey(KeyLayout::kPlain, ""), std::nullopt) << "the legacy mark's key is no ID";
}

TEST(RecordTest, InlineEncodingIsTheSameBytes) {
  for (size_t result_bytes : {size_t{0}, size_t{5}, size_t{64}, size_t{65}, size_t{5000}}) {
    const std::string result(result_bytes, 'r');
    Record record;
    record.state = RecordState::kDone;
    record.deadline_us = -12345;
    record.token = 1ULL << 63;
    record.fingerprint = 42;
    record.result = result;
    EXPECT_EQ(EncodedRecord(record).view(), EncodeRecord(record)) << result_bytes;
  }
}

TEST(RecordTest, RoundTripsEveryField) {
  Record in;
  in.state = RecordState::kDone;
  in.deadline_us = 1'700'000'000'123'456;
  in.token = 300;
  in.fingerprint = 0xdeadbeefcafef00d;
  in.result = std::string_view("res\0ult", 7);
  const std::string bytes = EncodeRecord(in);
  absl::StatusOr<Record> out = DecodeRecord(bytes);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->state, RecordState::kDone);
  EXPECT_EQ(out->deadline_us, in.deadline_us);
  EXPECT_EQ(out->token, 300u);
  EXPECT_EQ(out->fingerprint, in.fingerprint);
  EXPECT_EQ(out->result, in.result);
  EXPECT_EQ(DecodeDeadline(bytes), in.deadline_us);
}

TEST(RecordTest, ReservationIsCompact) {
  Record in;
  in.deadline_us = 1'700'000'000'000'000;
  in.token = 100;
  EXPECT_EQ(EncodeRecord(in).size(), 11u);  // version, kind, 8-byte deadline, 1-byte token
  in.token = ~uint64_t{0};
  absl::StatusOr<Record> out = DecodeRecord(EncodeRecord(in));
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->token, ~uint64_t{0});
  EXPECT_FALSE(out->fingerprint.has_value());
}

TEST(RecordTest, MalformedBytesAreDataLoss) {
  Record in;
  in.deadline_us = 5;
  in.token = 9;
  const std::string good = EncodeRecord(in);
  EXPECT_THAT(DecodeRecord(""), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodeRecord(good.substr(0, good.size() - 1)), StatusIs(absl::StatusCode::kDataLoss));
  std::string bad = good;
  bad[0] = 0x02;
  EXPECT_THAT(DecodeRecord(bad), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(DecodeDeadline(bad).has_value());
  bad = good;
  bad[1] = 0x03;
  EXPECT_THAT(DecodeRecord(bad), StatusIs(absl::StatusCode::kDataLoss));
  bad = good;
  bad[1] = 0x41;
  EXPECT_THAT(DecodeRecord(bad), StatusIs(absl::StatusCode::kDataLoss));
  bad = good + "x";  // a reservation never carries a result
  EXPECT_THAT(DecodeRecord(bad), StatusIs(absl::StatusCode::kDataLoss));
  in.token = 0;
  EXPECT_THAT(DecodeRecord(EncodeRecord(in)), StatusIs(absl::StatusCode::kDataLoss));
  in.token = 1;
  in.fingerprint = 1;
  const std::string with_fp = EncodeRecord(in);
  EXPECT_THAT(DecodeRecord(with_fp.substr(0, with_fp.size() - 3)), StatusIs(absl::StatusCode::kDataLoss));
  // An over-long varint.
  std::string overlong = good.substr(0, 10) + std::string(11, '\xff');
  EXPECT_THAT(DecodeRecord(overlong), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(RecordTest, MetaRoundTripsAndRejectsGarbage) {
  absl::StatusOr<uint64_t> hw = DecodeMeta(EncodeMeta(1 << 20));
  ASSERT_THAT(hw, IsOk());
  EXPECT_EQ(*hw, 1u << 20);
  EXPECT_THAT(DecodeMeta("xx"), StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace idem::engine
