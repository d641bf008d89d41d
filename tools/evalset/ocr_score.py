#!/usr/bin/env python3
"""Scores PaddleOCR recognizer outputs, or compares two output tensors.

    ocr_score.py --probs OUT.npy --labels labels.txt [--keys ppocr_keys_v1.txt]
                 [--json] [--verbose] [--range START:END]
    ocr_score.py --det-probs OUT.npy --boxes boxes.json [--json]
    ocr_score.py --compare A.npy B.npy [--json]

Scoring: greedy CTC decoding of OUT.npy [N, T, C] (argmax per time step, merge repeats, drop the
blank class 0; class k >= 1 is line k-1 of the keys file, and class len(keys)+1 is ' '), then the
character error rate (sum of Levenshtein distances / sum of reference lengths) and the line
accuracy (exact matches / N). --range scores only samples [START, END) (e.g. the degraded stretch
recorded in make_textlines.py's meta.json). --json prints {"cer", "line_acc", "n", ...}.

Detection: the mean of the detector's probability map [N, 1, H, W] inside the ground-truth line
boxes of make_pages.py ("inside"; pixel centres within a box), inside their DB kernels
("inside_kernel": each box shrunk as PaddleOCR's training target is, shrink_ratio 0.4, i.e. the
central band of the line), outside every box ("outside"), the lowest per-box and per-kernel means
("min_box", "min_kernel") and the fraction of kernels whose mean exceeds 0.5 ("kernel_hit").
A DB map is high only on the kernel, so "inside" is ~0.4 even for a perfect detection.

Compare: rel = max|A-B| / max|A| (A is the reference); when the tensors look like probabilities
over the last axis (values in [0, 1] summing to 1) also top1_agree, the fraction of positions whose
argmax over the last axis is the same; for [0, 1] maps that are not distributions (e.g. the
detector's sigmoid map) bin_agree, the fraction of elements on the same side of 0.3 (PaddleOCR's
det_db_thresh).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_textlines import default_keys_path, read_keys  # noqa: E402


def ctc_greedy(probs, charset):
    """probs [N, T, C] -> list of strings. charset[0] is the blank."""
    idx = probs.argmax(axis=-1)
    out = []
    for row in idx:
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append(''.join(charset[k] for k in row[keep] if k != 0))
    return out


def levenshtein(a, b):
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def read_labels(path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    lines = [l[:-1] if l.endswith('\r') else l for l in text.split('\n')]
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def score(preds, labels):
    dist = sum(levenshtein(p, t) for p, t in zip(preds, labels))
    chars = sum(len(t) for t in labels)
    ns = [(p.replace(' ', ''), t.replace(' ', '')) for p, t in zip(preds, labels)]
    dist_ns = sum(levenshtein(p, t) for p, t in ns)
    chars_ns = sum(len(t) for _, t in ns)
    n = len(labels)
    return {'cer': dist / max(chars, 1), 'line_acc': sum(p == t for p, t in zip(preds, labels)) / max(n, 1),
            'n': n, 'edits': dist, 'chars': chars, 'cer_nospace': dist_ns / max(chars_ns, 1)}


def compare(a, b):
    if a.shape != b.shape:
        raise SystemExit(f'ocr_score: shapes differ: {a.shape} vs {b.shape}')
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a64).all() and np.isfinite(b64).all()):
        res = {'rel': float('inf'), 'nonfinite': int((~np.isfinite(b64)).sum())}
    else:
        diff = np.abs(a64 - b64).max() if a.size else 0.0
        ref = np.abs(a64).max() if a.size else 0.0
        res = {'rel': float(diff / ref) if ref > 0 else float(diff), 'max_abs_diff': float(diff),
               'max_abs_ref': float(ref)}
    unit = a.size and a64.min() >= 0 and a64.max() <= 1
    if unit and a.ndim >= 2 and a.shape[-1] > 1 and np.allclose(a64.sum(-1), 1, atol=1e-3):
        res['top1_agree'] = float((a.argmax(-1) == b.argmax(-1)).mean())
    elif unit:
        res['bin_agree'] = float(((a64 > 0.3) == (b64 > 0.3)).mean())
    return res


def db_kernel(box, ratio=0.4):
    """The region DB's probability map is trained on: the box shrunk by
    D = area * (1 - ratio^2) / perimeter (PaddleOCR MakeShrinkMap, shrink_ratio 0.4)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    d = w * h * (1 - ratio * ratio) / (2 * (w + h)) if w > 0 and h > 0 else 0.0
    return [x0 + d, y0 + d, x1 - d, y1 - d]


def det_score(probs, boxes):
    if probs.ndim == 4:
        probs = probs[:, 0]
    pages = boxes['pages']
    if probs.shape[0] != len(pages):
        raise SystemExit(f'ocr_score: {probs.shape[0]} maps but {len(pages)} pages in boxes.json')
    ins, kers, outs, per_box, per_kernel = [], [], [], [], []
    for m, page in zip(probs.astype(np.float64), pages):
        h, w = m.shape
        cy, cx = np.arange(h) + 0.5, np.arange(w) + 0.5

        def region(b):
            x0, y0, x1, y1 = b
            return ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]

        union, kunion = np.zeros((h, w), bool), np.zeros((h, w), bool)
        for b in page['boxes']:
            sel, ker = region(b['box']), region(db_kernel(b['box']))
            if not ker.any():  # a kernel thinner than a pixel: its centre row
                x0, y0, x1, y1 = b['box']
                yc = min(h - 1, int((y0 + y1) / 2))
                ker = np.zeros((h, w), bool)
                ker[yc] = (cx >= x0) & (cx < x1)
            per_box.append(float(m[sel].mean()) if sel.any() else 0.0)
            per_kernel.append(float(m[ker].mean()) if ker.any() else 0.0)
            union |= sel
            kunion |= ker
        ins.append(m[union])
        kers.append(m[kunion])
        outs.append(m[~union])
    ins, kers, outs = np.concatenate(ins), np.concatenate(kers), np.concatenate(outs)
    mean = lambda v: float(v.mean()) if v.size else 0.0  # noqa: E731
    return {'inside': mean(ins), 'inside_kernel': mean(kers), 'outside': mean(outs),
            'min_box': min(per_box, default=0.0), 'min_kernel': min(per_kernel, default=0.0),
            'kernel_hit': sum(v > 0.5 for v in per_kernel) / max(len(per_kernel), 1),
            'boxes': len(per_box), 'pages': len(pages)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--probs')
    p.add_argument('--labels')
    p.add_argument('--keys', default=None)
    p.add_argument('--det-probs', help="the detector's output map [N, 1, H, W]")
    p.add_argument('--boxes', help="make_pages.py's boxes.json")
    p.add_argument('--compare', nargs=2, metavar=('A.npy', 'B.npy'))
    p.add_argument('--range', default=None, metavar='START:END')
    p.add_argument('--json', action='store_true')
    p.add_argument('--verbose', action='store_true')
    args = p.parse_args(argv)

    if args.compare:
        res = compare(np.load(args.compare[0]), np.load(args.compare[1]))
        if args.json:
            print(json.dumps(res))
        else:
            print(' '.join(f'{k}={v:.6g}' if isinstance(v, float) else f'{k}={v}'
                           for k, v in res.items()))
        return
    if args.det_probs:
        if not args.boxes:
            p.error('--det-probs needs --boxes')
        with open(args.boxes) as f:
            res = det_score(np.load(args.det_probs), json.load(f))
        if args.json:
            print(json.dumps(res))
        else:
            print(f'pages={res["pages"]} boxes={res["boxes"]} inside={res["inside"]:.4f} '
                  f'inside_kernel={res["inside_kernel"]:.4f} outside={res["outside"]:.4f} '
                  f'min_box={res["min_box"]:.4f} min_kernel={res["min_kernel"]:.4f} '
                  f'kernel_hit={res["kernel_hit"]:.4f}')
        return
    if not args.probs or not args.labels:
        p.error('--probs and --labels are required (or --compare A B)')
    keys_path = args.keys or default_keys_path()
    charset = ['<blank>'] + read_keys(keys_path) + [' ']
    probs = np.load(args.probs)
    labels = read_labels(args.labels)
    if probs.ndim != 3 or probs.shape[0] != len(labels):
        sys.exit(f'ocr_score: probs shape {probs.shape} does not match {len(labels)} labels')
    if probs.shape[2] != len(charset):
        sys.exit(f'ocr_score: {probs.shape[2]} classes but keys give {len(charset)}')
    lo, hi = 0, len(labels)
    if args.range:
        lo, hi = (int(v) for v in args.range.split(':'))
    preds = ctc_greedy(probs[lo:hi], charset)
    labels = labels[lo:hi]
    if args.verbose:
        for i, (pr, t) in enumerate(zip(preds, labels), lo):
            print(f'{i:5d} {"ok " if pr == t else "ERR"} {pr} | {t}')
    res = score(preds, labels)
    if args.json:
        print(json.dumps(res))
    else:
        print(f'n={res["n"]} cer={res["cer"]:.4f} line_acc={res["line_acc"]:.4f} '
              f'(edits {res["edits"]} / {res["chars"]} chars; cer ignoring spaces '
              f'{res["cer_nospace"]:.4f})')


if __name__ == '__main__':
    main()
