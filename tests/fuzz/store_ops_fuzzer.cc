// Fuzz target: API operation sequences. The input is read as operations (3 bytes each: kind, IDs,
// seconds) applied to a store on an in-memory Env and to the reference model of tests/support/model.h; any
// divergence aborts with the sequence printed. Interleaved, raw IDs taken from the input (binary, empty,
// over the limit) go through Reserve (kReserveRaw), which must answer them with a verdict or
// InvalidArgument.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "rocksdb/env.h"
#include "tests/support/model.h"

namespace {

using idem::testing::Harness;
using idem::testing::Op;
using idem::testing::OpKind;

constexpr size_t kMaxOps = 160;

Op Decode(uint8_t kind, uint8_t ids, uint8_t seconds) {
  Op op;
  op.kind = idem::testing::KindOf(kind % 100);
  op.id = ids % 6;
  op.other = (ids / 6) % 6;
  if (op.kind == OpKind::kAdvance) op.seconds = seconds < 48 ? 3000 + seconds * 110 : seconds % 40 + 1;
  if (op.kind == OpKind::kRewind) op.seconds = seconds % 20 + 1;
  return op;
}

// The input in hex, so that a failure found by the replay driver (which keeps no crash files) can be
// reproduced: xxd -r -p > crash && store_ops_fuzzer crash.
[[noreturn]] void Fail(const uint8_t* data, size_t size) {
  std::fprintf(stderr, "input (%zu bytes): ", size);
  for (size_t i = 0; i < size; ++i) std::fprintf(stderr, "%02x", data[i]);
  std::fprintf(stderr, "\n");
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // One in-memory Env per input: nothing leaks from one input into the next.
  std::unique_ptr<rocksdb::Env> env(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  const bool durable = data[0] & 1;
  Harness harness(durable, "/fuzz/db", env.get());
  std::vector<Op> applied;
  size_t i = 1;
  while (i + 3 <= size && applied.size() < kMaxOps) {
    Op op;
    if (data[i] == 0xff) {
      // A raw ID: a length byte, then that many input bytes, prefixed so that it never equals an idN.
      // Length 0 is the empty ID; 250..255 give IDs of 510..515 bytes, around max_id_bytes (512).
      const size_t length = data[i + 1];
      const size_t start = i + 2;
      const size_t taken = std::min(length, size - start);
      op.kind = OpKind::kReserveRaw;
      if (length >= 250) {
        op.raw.assign(510 + (length - 250), 'x');
      } else if (length > 0) {
        op.raw = "\xfe" + std::string(reinterpret_cast<const char*>(data) + start, taken);
      }
      op.seconds = static_cast<int64_t>(op.raw.size());
      i = start + (length >= 250 ? 0 : taken);
    } else {
      op = Decode(data[i], data[i + 1], data[i + 2]);
      i += 3;
    }
    applied.push_back(op);
    const std::string diff = harness.Apply(op);
    if (!diff.empty()) {
      // The sequence as ParseOps reads it, to paste into a ModelRegressionTest.
      std::fprintf(stderr, "store and model differ (%s reservations): %s\nsequence:\n",
                   durable ? "durable" : "in-memory", diff.c_str());
      for (const Op& o : applied) std::fprintf(stderr, "  %s\n", idem::testing::Describe(o).c_str());
      Fail(data, size);
    }
  }
  return 0;
}
