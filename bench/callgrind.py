#!/usr/bin/env python3
"""Instructions per operation of each case of idem_instructions, counted by callgrind on the calling
thread inside MeasuredRegion only, split into RocksDB (with the libc and libstdc++ it calls), the
libc/libstdc++ idem calls directly (clock reads, mutexes, copies, allocation), and idem's own code (idem
and abseil, with the template code they instantiate).

Usage: bench/callgrind.py <idem_instructions binary> [--events=N] [--preload=N] [--top=K] [case ...]
Prints a markdown table, and with --top the K costliest functions of idem's own code per case."""
import os
import re
import subprocess
import sys
import tempfile

CASES = ["raw_put_plain", "raw_put", "raw_batch64", "raw_get_hit", "cycle_default", "cycle_durable",
         "batch64_default", "batch64_durable", "dup_hot"]


SHARED_RUNTIME = re.compile(r"(libc[.-]|libstdc\+\+|ld-linux|libm[.-]|libgcc|vdso|libpthread)")


def classify(function, obj):
    """harness (the frames around MeasuredRegion), own (idem and abseil), rocksdb, or runtime (libc,
    libstdc++, template instances and anything else: charged to whoever calls it)."""
    if function in ("(below main)", "main") or function.startswith("0x") or "idem::bench::" in function:
        return "harness"
    if function.startswith(("idem::", "absl::")):
        return "own"
    if "rocksdb::" in function or "librocksdb" in obj:
        return "rocksdb"
    return "runtime"


def parse(path):
    """Self cost per (function, object) and inclusive cost per call edge, from a callgrind file."""
    names = {"fn": {}, "ob": {}, "cfn": {}, "cob": {}}
    self_cost, edges = {}, {}
    fn = ob = cfn = cob = None
    pending_call = False

    def name(kind, value):
        table = names["fn" if kind in ("fn", "cfn") else "ob"]
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), value)

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                ir = int(line.split()[-1]) if len(line.split()) > 1 else 0
                if pending_call:
                    callee_ob = cob if cob is not None else ob
                    edges[(fn, ob, cfn, callee_ob)] = edges.get((fn, ob, cfn, callee_ob), 0) + ir
                    pending_call = False
                    cob = None
                else:
                    self_cost[(fn, ob)] = self_cost.get((fn, ob), 0) + ir
                continue
            key, _, value = line.partition("=")
            if key == "fn":
                fn = name("fn", value)
                cob = None
            elif key == "ob":
                ob = name("ob", value)
            elif key == "cfn":
                cfn = name("cfn", value)
            elif key == "cob":
                cob = name("ob", value)
            elif key == "calls":
                pending_call = True
    return self_cost, edges


def measure(binary, case, events, preload, top):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=*MeasuredRegion*", "--separate-threads=yes",
               "--compress-strings=no", "--compress-pos=no", f"--callgrind-out-file={out}", binary,
               f"--case={case}", f"--events={events}", f"--preload={preload}"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # --separate-threads writes one file per thread (-01 is the calling thread).
        self_cost, edges = parse(out + "-01")
    total = sum(self_cost.values())
    # idem's own: the self cost of its functions, plus the C/C++ runtime it calls directly (allocation,
    # hashing, string copies, template code). What RocksDB calls is RocksDB's, wherever it lands: with
    # RocksDB linked statically its inline and template code has no "rocksdb::" in its name either.
    own_by_function = {}
    for (fn, ob), ir in self_cost.items():
        if classify(fn or "", ob or "") == "own":
            own_by_function[fn] = own_by_function.get(fn, 0) + ir
    libc_of_own = templates_of_own = 0
    for (fn, ob, cfn, cob), ir in edges.items():
        if classify(fn or "", ob or "") == "own" and classify(cfn or "", cob or "") == "runtime":
            shared = bool(SHARED_RUNTIME.search(cob or ""))
            if shared:
                libc_of_own += ir
            else:
                templates_of_own += ir
            label = fn + (" -> libc/libstdc++" if shared else " -> template code")
            own_by_function[label] = own_by_function.get(label, 0) + ir
    own = sum(ir for (fn, ob), ir in self_cost.items() if classify(fn or "", ob or "") == "own") + templates_of_own
    per = events // 64 * 64 if case.startswith(("batch", "raw_batch")) else events
    ranked = sorted(((ir / per, f) for f, ir in own_by_function.items()), reverse=True)
    return {"total": total / per, "own": own / per, "libc": libc_of_own / per,
            "rocksdb": (total - own - libc_of_own) / per}, ranked[:top]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    if not args:
        print(__doc__)
        return 2
    binary, cases = args[0], args[1:] or CASES
    events, preload, top = int(opts.get("events", 50000)), int(opts.get("preload", 200000)), int(opts.get("top", 0))
    rows, profiles = [], {}
    for case in cases:
        totals, own = measure(binary, case, events, preload, top)
        rows.append((case, totals))
        profiles[case] = own
        print(f"measured {case}", file=sys.stderr)
    floor = next((t["total"] for c, t in rows if c == "raw_put_plain"), None)
    print(f"Instructions per event on the calling thread (callgrind), {events} events after a {preload}-key preload:\n")
    print("| case | instructions/event | RocksDB (with the libc it calls) | libc/libstdc++ called by idem "
          "| idem's own | vs raw_put_plain |")
    print("|---|---:|---:|---:|---:|---:|")
    for case, t in rows:
        ratio = f"{t['total'] / floor:.2f}" if floor else "-"
        print(f"| {case} | {t['total']:,.0f} | {t['rocksdb']:,.0f} | {t['libc']:,.0f} | {t['own']:,.0f} | {ratio} |")
    if top:
        for case, own in profiles.items():
            print(f"\nidem's own, {case}: the {top} costliest functions (instructions per event, self)")
            for ir, f in own:
                print(f"  {ir:8.0f}  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
