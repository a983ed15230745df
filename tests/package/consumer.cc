#include <cstdio>
#include <memory>

#include "idem/processor.h"
#include "idem/store.h"
#include "idem/version.h"

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  auto store = idem::Store::Open(idem::Options(), argv[1]);
  if (!store.ok()) return 1;
  auto r = (*store)->Reserve("package-test");
  if (!r.ok() || r->verdict != idem::Verdict::kReserved) return 1;
  if (!(*store)->Commit("package-test", r->token).ok()) return 1;
  if ((*store)->Reserve("package-test")->verdict != idem::Verdict::kDuplicate) return 1;
  // The runtime target installs and links too.
  idem::Processor processor(store->get());
  const idem::HandleResult h = processor.Handle(
      {"package-processor"}, [](const idem::EventContext&) -> absl::StatusOr<std::string> { return "ok"; });
  if (h.outcome != idem::Outcome::kApplied) return 1;
  std::printf("installed idem %s works\n", idem::Version());
  return 0;
}
