#!/usr/bin/env python3
"""Renders a deterministic set of text pages for the PaddleOCR text detector.

    make_pages.py --out DIR --count N --seed S [--size 640] [--keys KEYS] [--bgr]

Each page has a random original size (a few hundred pixels each way, not square), a white-ish
background and several (4-9) non-overlapping dark text lines in DejaVu fonts at random positions.
It is resized to --size x --size (bilinear, OpenCV INTER_LINEAR semantics; the aspect ratio is not
kept), converted to RGB float, normalised with mean [0.485, 0.456, 0.406] and std
[0.229, 0.224, 0.225] on x/255, and laid out CHW.

Outputs under DIR:
    pages.npy    float32 [N, 3, size, size]   the model input 'x'
    boxes.json   {"size", "pages": [{"index", "orig_w", "orig_h",
                  "boxes": [{"box": [x0, y0, x1, y1], "text"}]}]}: each line's ink box in the
                  resized coordinates (x1, y1 exclusive)
    images/      NNNNN.png, the resized page (what the model sees, before normalisation)
    meta.json    the parameters

The text comes from make_textlines.py's vocabulary, restricted to characters in the keys file.
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_textlines import (FONTS, default_keys_path, load_font, make_text,  # noqa: E402
                            read_keys, resize_bilinear, sample_rng)

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def render_page(rng, alphabet, size):
    ow, oh = int(rng.integers(560, 961)), int(rng.integers(560, 961))
    bg = tuple(int(rng.integers(232, 256)) for _ in range(3))
    img = Image.new('RGB', (ow, oh), bg)
    draw = ImageDraw.Draw(img)
    placed = []  # ink boxes in original coordinates
    want = int(rng.integers(4, 10))
    for _ in range(want * 30):
        if len(placed) == want:
            break
        text = make_text(rng, alphabet, 4, 25)
        font_name = FONTS[rng.integers(len(FONTS))]
        # Font size such that the text is ~18-34 px high after the resize to size x size.
        px = int(round(rng.uniform(20, 36) * oh / size))
        font = load_font(font_name, px)
        l, t, r, b = font.getbbox(text)
        if r - l > ow - 20 or b - t > oh - 20:
            continue
        x = int(rng.integers(10, ow - 10 - (r - l) + 1)) - l
        y = int(rng.integers(10, oh - 10 - (b - t) + 1)) - t
        mask = Image.new('L', (ow, oh), 0)
        ImageDraw.Draw(mask).text((x, y), text, font=font, fill=255)
        ys, xs = np.nonzero(np.asarray(mask) > 64)
        if len(xs) == 0:
            continue
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        gap = px // 2  # keep lines apart so that the detector's boxes do not merge
        if any(box[0] - gap < p[2] and p[0] - gap < box[2] and box[1] - gap < p[3]
               and p[1] - gap < box[3] for p, _ in placed):
            continue
        fg = tuple(int(v) for v in rng.integers(0, 60, 3))
        draw.text((x, y), text, font=font, fill=fg)
        placed.append((box, text))
    a = resize_bilinear(np.asarray(img), size, size)
    sx, sy = size / ow, size / oh
    boxes = [{'box': [round(b[0] * sx, 2), round(b[1] * sy, 2), round(b[2] * sx, 2),
                      round(b[3] * sy, 2)], 'text': t} for b, t in placed]
    return a, ow, oh, boxes


def det_normalize(a, bgr=False):
    x = a[..., ::-1] if bgr else a
    x = (x.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--count', type=int, required=True)
    p.add_argument('--seed', type=int, required=True)
    p.add_argument('--size', type=int, default=640, help='square model input size (default 640)')
    p.add_argument('--keys', default=None, help='ppocr_keys_v1.txt (default: the dynaprec cache)')
    p.add_argument('--bgr', action='store_true',
                   help='channel order B,G,R (what PaddleOCR feeds after cv2.imread); default RGB')
    args = p.parse_args(argv)
    if args.size % 32:
        sys.exit('make_pages: --size must be a multiple of 32 (the detector downsamples by 32)')
    keys_path = args.keys or default_keys_path()
    if not os.path.isfile(keys_path):
        sys.exit(f'make_pages: keys file {keys_path} not found (run scripts/fetch_models.sh '
                 'or pass --keys)')
    alphabet = set(read_keys(keys_path)) | {' '}
    os.makedirs(os.path.join(args.out, 'images'), exist_ok=True)

    pages = np.zeros((args.count, 3, args.size, args.size), np.float32)
    out = []
    for i in range(args.count):
        a, ow, oh, boxes = render_page(sample_rng(args.seed, i, stream=2), alphabet, args.size)
        pages[i] = det_normalize(a, args.bgr)
        Image.fromarray(a).save(os.path.join(args.out, 'images', f'{i:05d}.png'))
        out.append({'index': i, 'orig_w': ow, 'orig_h': oh, 'boxes': boxes})
    np.save(os.path.join(args.out, 'pages.npy'), pages)
    with open(os.path.join(args.out, 'boxes.json'), 'w') as f:
        json.dump({'size': args.size, 'pages': out}, f, indent=1)
    with open(os.path.join(args.out, 'meta.json'), 'w') as f:
        json.dump({'tool': 'make_pages.py', 'count': args.count, 'seed': args.seed,
                   'size': args.size, 'channel_order': 'BGR' if args.bgr else 'RGB',
                   'normalize': {'mean': MEAN.tolist(), 'std': STD.tolist()},
                   'keys': keys_path}, f, indent=1)
    print(f'make_pages: {args.count} pages -> {args.out}/pages.npy '
          f'[{args.count},3,{args.size},{args.size}], '
          f'{sum(len(p["boxes"]) for p in out)} text lines')


if __name__ == '__main__':
    main()
