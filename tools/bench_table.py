#!/usr/bin/env python3
"""Renders `smoothmax bench --json FILE` as the README's Markdown table.

Usage: python3 tools/bench_table.py docs/bench.json
One line per op, shape and element type: CPU median and GB/s (fraction of the same-type memcpy
yardstick; for the read-only ops, also of the row-sum yardstick), GPU kernel median and GB/s
(fractions of the same-type copy and exp-map yardsticks; read-only ops: and of the row sum),
GPU end-to-end median. Yardsticks in italics. Records without a type are f32.
"""
import json
import sys


def pct(v):
    return "" if v is None else f"{100 * v:.0f}%"


def main(path):
    with open(path) as f:
        doc = json.load(f)
    lines = {}  # (op, rows, cols, dtype) -> {device: record}, in first-seen order
    for r in doc["records"]:
        key = (r["op"], r["rows"], r["cols"], r.get("dtype", "f32"))
        lines.setdefault(key, {})[r["device"]] = r
    typed = any(k[3] != "f32" for k in lines)
    print("| op | shape |" + (" type |" if typed else "") + " CPU ms | CPU GB/s (/memcpy; /row-sum) | "
          "GPU kernel ms | GPU GB/s (/copy, /exp-map; /row-sum) | GPU e2e ms |")
    print("|---|---|" + ("---|" if typed else "") + "---:|---:|---:|---:|---:|")
    for (op, rows, cols, dtype), d in lines.items():
        cpu, kern, e2e = d.get("cpu"), d.get("gpu-kernel"), d.get("gpu-e2e")
        stick = op in ("copy", "exp-map", "memcpy", "row-sum")
        name = f"*{op}*" if stick else op
        cells = [name, f"{rows}x{cols}"] + ([dtype] if typed else [])
        if cpu:
            rs = cpu.get("frac_row_sum")
            frac = "" if stick else f" ({pct(cpu['frac_copy'])}" + (f"; {pct(rs)}" if rs else "") + ")"
            cells += [f"{cpu['median_ms']:.2f}", f"{cpu['gbps']:.2f}{frac}"]
        else:
            cells += ["", ""]
        if kern:
            rs = kern.get("frac_row_sum")
            frac = "" if stick else (f" ({pct(kern['frac_copy'])}, {pct(kern['frac_exp_map'])}"
                                     + (f"; {pct(rs)}" if rs else "") + ")")
            cells += [f"{kern['median_ms']:.2f}", f"{kern['gbps']:.2f}{frac}"]
        else:
            cells += ["", ""]
        cells.append(f"{e2e['median_ms']:.2f}" if e2e else "")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/bench.json")
