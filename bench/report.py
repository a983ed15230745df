#!/usr/bin/env python3
"""Turns idem_bench's JSON into the markdown table (times, ratios to the floor, ratios to the peers,
targets) and, when matplotlib is present, PNG plots. Usage: report.py results.json [out-dir]"""
import json
import re
import os
import sys


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            if b.get("error_occurred"):
                rows[b["name"]] = {"error": b.get("error_message", "error")}
            continue
        unit = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
        row = {"ns": b["real_time"] * unit, "p50": b.get("p50_ns"), "p99": b.get("p99_ns"),
               "p999": b.get("p999_ns"), "items_per_second": b.get("items_per_second")}
        if "bytes_per_id" in b:
            row["bytes_per_id"] = b["bytes_per_id"]
        # Per event: the wall time of one iteration over the events it handled (not Google Benchmark's
        # rate counters, which divide by CPU time).
        m = re.search(r"batch:(\d+)", b["name"])
        if m:
            row["per_event_ns"] = row["ns"] / int(m.group(1))
        rows[b["name"]] = row
    return data.get("context", {}), rows


FLOOR = {
    "BM_Floor_RawPut": "BM_Floor_PlainPut",
    "BM_Reserve_New": "BM_Floor_PlainPut",
    "BM_Cycle": "BM_Floor_PlainPut",
    "BM_CycleBatch": "BM_Floor_PlainPut",
    "BM_Cycle_Threads": "BM_Floor_PlainPut",
    "BM_Reserve_DuplicateHot": "BM_Floor_RawGetHit",
    "BM_Reserve_DuplicateCold": "BM_Floor_RawGetHit",
}
PEERS = ["BM_Peer_TransactionDB", "BM_Peer_DBWithTTL", "BM_Peer_SQLite", "BM_Peer_RedisSetNx"]


def fmt_ns(ns):
    if ns is None:
        return "-"
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def per_event(name, row):
    return row.get("per_event_ns", row["ns"])


def main():
    context, rows = load(sys.argv[1])
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(sys.argv[1])
    cycle = rows.get("BM_Cycle/durable:0")
    lines = []
    lines.append(f"Machine: {context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz, "
                 f"library build: {context.get('library_build_type', '?')}, date {context.get('date', '?')}")
    lines.append("")
    lines.append("| case | time/op (per event) | p50 | p99 | p999 | vs floor | floor |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | skipped: {row['error']} | | | | | |")
            continue
        base = name.split("/")[0]
        floor = FLOOR.get(base)
        ratio = "-"
        if floor and floor in rows and "ns" in rows[floor]:
            ratio = f"{per_event(name, row) / rows[floor]['ns']:.2f}×"
        lines.append(f"| {name} | {fmt_ns(per_event(name, row))} | {fmt_ns(row['p50'])} | {fmt_ns(row['p99'])} | "
                     f"{fmt_ns(row['p999'])} | {ratio} | {floor or '-'} |")
    lines.append("")
    if cycle:
        lines.append("idem's BM_Cycle/durable:0 (Reserve + Commit, default options) against each peer "
                     "(how many times faster idem is):")
        lines.append("")
        lines.append("| peer | peer mean | idem/peer mean speed-up | peer p50 | speed-up at p50 |")
        lines.append("|---|---|---|---|---|")
        for peer in PEERS:
            row = rows.get(peer)
            if row is None:
                continue
            if "error" in row:
                lines.append(f"| {peer} | skipped: {row['error']} | | | |")
                continue
            lines.append(f"| {peer} | {fmt_ns(row['ns'])} | {row['ns'] / cycle['ns']:.2f}× | {fmt_ns(row['p50'])} | "
                         f"{(row['p50'] or 0) / (cycle['p50'] or 1):.2f}× |")
        lines.append("")

    def ratio(a, b, key="ns"):
        if a in rows and b in rows and key in rows[a] and key in rows[b] and rows[b][key]:
            return per_event(a, rows[a]) / per_event(b, rows[b]) if key == "ns" else rows[a][key] / rows[b][key]
        return None

    targets = [
        ("cycle, default options ≤ 0.8× a plain RocksDB Put", ratio("BM_Cycle/durable:0", "BM_Floor_PlainPut"), 0.8, "le"),
        ("cycle ≤ 1.1× the floor on idem's own column-family options", ratio("BM_Cycle/durable:0", "BM_Floor_RawPut"), 1.1, "le"),
        ("batch of 64 per event ≤ 0.35× a plain RocksDB Put", ratio("BM_CycleBatch/batch:64", "BM_Floor_PlainPut"), 0.35, "le"),
        ("hot duplicate ≤ 0.5× a raw Get hit", ratio("BM_Reserve_DuplicateHot", "BM_Floor_RawGetHit"), 0.5, "le"),
        ("Redis SET NX round trip ≥ 6× an idem cycle", ratio("BM_Peer_RedisSetNx", "BM_Cycle/durable:0"), 6, "ge"),
        ("Redis SET NX round trip ≥ 15× an idem batch-of-64 event", ratio("BM_Peer_RedisSetNx", "BM_CycleBatch/batch:64"), 15, "ge"),
        ("cycle ≥ 2× faster than TransactionDB", ratio("BM_Peer_TransactionDB", "BM_Cycle/durable:0"), 2, "ge"),
        ("cycle ≥ 3× faster than SQLite", ratio("BM_Peer_SQLite", "BM_Cycle/durable:0"), 3, "ge"),
    ]
    space = next((r["bytes_per_id"] for n, r in rows.items() if "bytes_per_id" in r), None)
    if space is not None:
        targets.append(("Space ≤ 40 bytes on disk per live 16-byte ID after compaction", space, 40, "le_bytes"))
    lines.append("| target | measured | met |")
    lines.append("|---|---|---|")
    for label, value, bound, kind in targets:
        if value is None:
            lines.append(f"| {label} | not measured | - |")
            continue
        met = value <= bound if kind.startswith("le") else value >= bound
        shown = f"{value:.1f} bytes" if kind == "le_bytes" else f"{value:.2f}×"
        lines.append(f"| {label} | {shown} | {'yes' if met else '**no**'} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(table + "\n")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plots; apt-get install python3-matplotlib)")
        return
    names = [n for n, r in rows.items() if "error" not in r and r.get("p50")]
    fig, ax = plt.subplots(figsize=(11, 5))
    xs = range(len(names))
    for key, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p999")):
        ax.plot(xs, [rows[n][key] / 1000 for n in names], marker="o", label=label)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("latency per operation (µs, log)")
    ax.set_title("idem_bench latency percentiles per case")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "latency.png"), dpi=110)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    threads = [(int(n.split("threads:")[1]), rows[n]["items_per_second"]) for n in names
               if n.startswith("BM_Cycle_Threads/")]
    if threads:
        a1.plot([t for t, _ in threads], [v / 1000 for _, v in threads], marker="o")
        a1.set_xlabel("threads")
        a1.set_ylabel("events/s (thousands)")
        a1.set_title("BM_Cycle_Threads throughput")
    batches = [(int(n.split("batch:")[1]), rows[n]["items_per_second"]) for n in names
               if n.startswith("BM_CycleBatch/")]
    if batches:
        a2.plot([b for b, _ in batches], [v / 1000 for _, v in batches], marker="o")
        a2.set_xscale("log", base=2)
        a2.set_xlabel("batch size")
        a2.set_ylabel("events/s (thousands)")
        a2.set_title("BM_CycleBatch throughput")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "throughput.png"), dpi=110)
    print(f"\nplots: {out_dir}/latency.png {out_dir}/throughput.png")


if __name__ == "__main__":
    main()
