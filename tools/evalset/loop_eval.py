#!/usr/bin/env python3
"""Evaluates runs of the text recognizer over a stream against an independent fp32 run.

    loop_eval.py --ref FP32_DIR --labels labels.txt --target DB RUN_NAME=RUN_DIR:REPORT.json ...
                 [--range START:END] [--json]

For each run: the per-portion output SQNR against the fp32 run (one portion = one sample along
axis 0 of softmax_11.tmp_0.npy unless the report's portions cover several), the share of portions
at or above TARGET - 1 dB, the CER (greedy CTC, ocr_score.py) next to fp32's, and from the report
the time, bytes moved, precision share and switches. Prints a Markdown table (or JSON).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ocr_score  # noqa: E402

OUT = "softmax_11.tmp_0.npy"


def sqnr_db(ref, got):
    ref = ref.astype(np.float64)
    err = ((ref - got) ** 2).sum()
    sig = (ref ** 2).sum()
    if err == 0:
        return float("inf")
    return 10 * np.log10(sig / err)


def evaluate(name, run_dir, report_path, ref, labels, charset, target, rng):
    got = np.load(os.path.join(run_dir, OUT))
    rep = json.load(open(report_path))
    portions = rep["portions"]
    n = ref.shape[0]
    per = max(1, n // max(1, len(portions)))
    sq = []
    for i in range(0, n, per):
        sq.append(sqnr_db(ref[i:i + per], got[i:i + per]))
    sq = np.array(sq)
    lo, hi = rng
    sel = sq[lo // per:(hi + per - 1) // per] if hi else sq
    preds = ocr_score.ctc_greedy(got, charset)
    cer = ocr_score.score(preds[lo:hi or None], labels[lo:hi or None])["cer"]
    s = rep["summary"]
    return {
        "run": name,
        "portions": len(sel),
        "share_ok": float((sel >= target - 1).mean()),
        "min_sqnr_db": float(sel.min()),
        "median_sqnr_db": float(np.median(sel)),
        "cer": cer,
        "time_ms": s["time_ms"],
        "bytes_moved": s["bytes_moved"],
        "bytes_moved_fp32": s["bytes_moved_fp32"],
        "switches": s["switches"],
        "precision_share": s["precision_share"],
        "energy_uj_model": s.get("energy_uj_model"),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--keys", default=None)
    p.add_argument("--target", type=float, default=30)
    p.add_argument("--range", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("runs", nargs="+", metavar="NAME=DIR:REPORT")
    a = p.parse_args(argv)
    ref = np.load(os.path.join(a.ref, OUT))
    labels = ocr_score.read_labels(a.labels)
    charset = ["<blank>"] + ocr_score.read_keys(a.keys or ocr_score.default_keys_path()) + [" "]
    rng = (0, 0)
    if a.range:
        lo, hi = a.range.split(":")
        rng = (int(lo), int(hi))
    rows = []
    for spec in a.runs:
        name, rest = spec.split("=", 1)
        d, r = rest.rsplit(":", 1)
        rows.append(evaluate(name, d, r, ref, labels, charset, a.target, rng))
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    base = next((r for r in rows if r["run"] == "fp32"), rows[0])
    print(f"| run | portions ≥ {a.target - 1:g} dB | min / median SQNR (dB) | CER | time (ms) | "
          "time vs fp32 | bytes vs fp32 | switches | precision share (MACs) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        share = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["precision_share"].items(),
                                                           key=lambda kv: -kv[1]))
        print(f"| {r['run']} | {100 * r['share_ok']:.1f}% | {r['min_sqnr_db']:.1f} / "
              f"{r['median_sqnr_db']:.1f} | {r['cer']:.4f} | {r['time_ms']:.0f} | "
              f"{r['time_ms'] / base['time_ms']:.2f} | "
              f"{r['bytes_moved'] / r['bytes_moved_fp32']:.3f} | {r['switches']} | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
