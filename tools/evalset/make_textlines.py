#!/usr/bin/env python3
"""Renders a deterministic set of single text lines for the PaddleOCR recognizer.

    make_textlines.py --out DIR --count N --seed S [--width 320] [--keys KEYS]
                      [--degrade START:END[:KIND]] [--bgr]

Each line is drawn with a DejaVu font (Sans, Serif, Mono, in regular and bold weights) at a
random size, dark text on a light background with slight colour variation, cropped to the ink
with a small margin, then preprocessed exactly as PaddleOCR's recognizer (resize_norm_img):
resize to height 48 keeping the aspect ratio (bilinear, OpenCV INTER_LINEAR semantics), width
min(ceil(48*w/h), --width), scale to [-1, 1] with (x/255 - 0.5)/0.5, CHW, right-pad with zeros.

Outputs under DIR:
    lines.npy    float32 [N, 3, 48, width]   the model input 'x'
    labels.txt   one ground-truth line per sample (UTF-8)
    images/      NNNNN.png, the 48-pixel-high image the model sees (before normalisation/padding)
    meta.json    parameters, per-sample font/size and which samples are degraded

Sample i depends only on (seed, i), so the same seed with and without --degrade yields the same
texts and fonts; only the samples in [START, END) differ (KIND noise, contrast or blur).
Only numpy and PIL are needed (Debian: python3-numpy python3-pil fonts-dejavu-core).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = '/usr/share/fonts/truetype/dejavu'
FONTS = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf', 'DejaVuSerif.ttf', 'DejaVuSerif-Bold.ttf',
         'DejaVuSansMono.ttf', 'DejaVuSansMono-Bold.ttf']
REC_H = 48

WORDS = """
the of and to in is it you that he was for on are with as his they be at one have this from or
had by word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make
thing see him two has look more day could go come did number sound no most people my over know
water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
head stand own page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start might story saw
far sea draw left late run while press close night real life few north open seem together next
white children begin got walk example ease paper group always music those both mark often letter
until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual
young ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half rock
order fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow center
love person money serve appear road map rain rule govern pull cold notice voice unit power town
fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct
able pound done beauty drive stood contain front teach week final gave green quick develop ocean
warm free minute strong special mind behind clear tail produce fact street inch multiply nothing
course stay wheel full force blue object decide surface deep moon island foot system busy test
record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape
equate miss brought heat snow tire bring yes distant fill east paint language among
""".split()
PUNCT = list(".,:;!?-'\"()/&%#+=@*")


def read_keys(path):
    """Dictionary lines (class k >= 1 is line k-1); tolerates CRLF and a missing final newline."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    keys = [k[:-1] if k.endswith('\r') else k for k in text.split('\n')]
    if keys and keys[-1] == '':
        keys.pop()
    return keys


def default_keys_path():
    cache = os.environ.get('DYNAPREC_CACHE') or os.path.join(os.path.expanduser('~'), '.cache',
                                                              'dynaprec')
    return os.path.join(cache, 'npm', 'node_modules', '@gutenye', 'ocr-models', 'assets',
                        'ppocr_keys_v1.txt')


def sample_rng(seed, index, stream=0):
    """An independent generator per (seed, sample, stream): samples never influence each other."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, index])))


def _token(rng, alphabet):
    r = rng.random()
    if r < 0.62:
        w = WORDS[rng.integers(len(WORDS))]
        c = rng.random()
        if c < 0.18:
            w = w.capitalize()
        elif c < 0.24:
            w = w.upper()
    elif r < 0.84:
        n = int(rng.integers(1, 7))
        w = ''.join(str(d) for d in rng.integers(0, 10, n))
        c = rng.random()
        if c < 0.15 and n >= 2:
            w = w[:-1] + '.' + w[-1]  # decimal
        elif c < 0.25:
            w = '$' + w
        elif c < 0.35:
            w = w + '%'
    else:
        w = PUNCT[rng.integers(len(PUNCT))]
        if w in '.,:;!?%':  # attach trailing punctuation to a word
            w = WORDS[rng.integers(len(WORDS))] + w
        elif w in '(':
            w = '(' + WORDS[rng.integers(len(WORDS))] + ')'
        elif w == '"':
            w = '"' + WORDS[rng.integers(len(WORDS))] + '"'
    return ''.join(ch for ch in w if ch in alphabet)


def make_text(rng, alphabet, min_len=3, max_len=25):
    target = int(rng.integers(min_len, max_len + 1))
    for _ in range(100):
        parts = []
        while len(' '.join(parts)) < target:
            t = _token(rng, alphabet)
            if t:
                parts.append(t)
        text = ' '.join(parts)
        if len(text) > max_len:  # drop the last token, or cut a single long token
            text = ' '.join(parts[:-1]) if len(parts) > 1 else text[:max_len]
        text = text.strip()
        if min_len <= len(text) <= max_len:
            return text
    raise RuntimeError('could not build a text line')


def load_font(name, size):
    return ImageFont.truetype(os.path.join(FONT_DIR, name), size)


def render_line(rng, text, font_name, size):
    """Draws text, returns an RGB uint8 array cropped to the ink plus a margin."""
    font = load_font(font_name, size)
    bg = np.array([rng.integers(228, 256) for _ in range(3)])
    fg = np.array([rng.integers(0, 50) for _ in range(3)])
    l, t, r, b = font.getbbox(text)
    pad = size
    img = Image.new('RGB', (r - l + 2 * pad, b - t + 2 * pad), tuple(int(v) for v in bg))
    ImageDraw.Draw(img).text((pad - l, pad - t), text, font=font, fill=tuple(int(v) for v in fg))
    a = np.asarray(img)
    ink = np.abs(a.astype(np.int16) - bg[None, None, :]).max(axis=2) > 40
    ys, xs = np.nonzero(ink)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    # Margin relative to the font size, slightly random and asymmetric (as a detector crop is).
    m = [int(round(size * f)) for f in rng.uniform(0.08, 0.25, 4)]
    y0, y1 = max(0, y0 - m[0]), min(a.shape[0], y1 + m[1])
    x0, x1 = max(0, x0 - m[2]), min(a.shape[1], x1 + m[3])
    return np.ascontiguousarray(a[y0:y1, x0:x1])


def resize_bilinear(a, out_w, out_h):
    """OpenCV cv2.resize(INTER_LINEAR) semantics for uint8 HWC: half-pixel centres, no
    anti-aliasing, edge clamping, 11-bit fixed-point weights, rounded to uint8."""
    in_h, in_w = a.shape[:2]
    if in_h == 2 * out_h and in_w == 2 * out_w:  # OpenCV switches to INTER_AREA for exact 2x
        s = a.astype(np.int64)
        s = s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2]
        return ((s + 2) >> 2).astype(np.uint8)

    def axis(n_out, n_in):
        scale = n_in / n_out
        f = (np.arange(n_out) + 0.5) * scale - 0.5
        i0 = np.floor(f).astype(np.int64)
        w1 = f - i0
        lo = i0 < 0
        w1[lo], i0[lo] = 0.0, 0
        hi = i0 >= n_in - 1
        w1[hi], i0[hi] = 0.0, n_in - 1
        i1 = np.minimum(i0 + 1, n_in - 1)
        w1 = np.round(w1 * 2048).astype(np.int64)
        return i0, i1, 2048 - w1, w1

    yi0, yi1, yw0, yw1 = axis(out_h, in_h)
    xi0, xi1, xw0, xw1 = axis(out_w, in_w)
    src = a.astype(np.int64)
    rows = src[yi0] * yw0[:, None, None] + src[yi1] * yw1[:, None, None]
    out = rows[:, xi0] * xw0[None, :, None] + rows[:, xi1] * xw1[None, :, None]
    return ((out + (1 << 21)) >> 22).clip(0, 255).astype(np.uint8)


def rec_resize(a, max_w):
    h, w = a.shape[:2]
    rw = min(max_w, int(math.ceil(REC_H * w / h)))
    return resize_bilinear(a, rw, REC_H)


def rec_normalize(resized, max_w, bgr=False):
    x = resized[..., ::-1] if bgr else resized
    x = (x.astype(np.float32) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, REC_H, max_w), np.float32)
    out[:, :, :x.shape[1]] = x.transpose(2, 0, 1)
    return out


def degrade(rng, a, kind):
    """Heavy degradation of a 48-high uint8 RGB line image. Strengths were tuned so that ONNX
    Runtime's CER on the degraded lines is roughly 0.2-0.3 (from ~0.005 on clean ones)."""
    f = a.astype(np.float32)
    g = f.mean()
    if kind == 'noise':  # halved contrast, then mostly monochrome Gaussian noise, sigma 100
        f = (f - g) * rng.uniform(0.42, 0.5) + g
        f = f + _noise(rng, f.shape, 100.0)
    elif kind == 'contrast':  # ink-to-paper difference down to ~12-16 levels, light noise
        f = (f - g) * rng.uniform(0.055, 0.07) + rng.uniform(90, 170)
        f = f + _noise(rng, f.shape, 12.0)
    elif kind == 'blur':
        img = Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius=rng.uniform(4.5, 5.5)))
        f = np.asarray(img).astype(np.float32)
    else:
        raise ValueError(f'unknown degradation {kind!r}')
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def _noise(rng, shape, sigma):
    mono = rng.normal(0.0, sigma, shape[:2])[..., None]
    return 0.7 * mono + 0.3 * rng.normal(0.0, sigma, shape)


def parse_degrade(s):
    parts = s.split(':')
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError('expected START:END[:KIND]')
    kind = parts[2] if len(parts) == 3 else 'noise'
    if kind not in ('noise', 'contrast', 'blur'):
        raise argparse.ArgumentTypeError('KIND must be noise, contrast or blur')
    return int(parts[0]), int(parts[1]), kind


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--count', type=int, required=True)
    p.add_argument('--seed', type=int, required=True)
    p.add_argument('--width', type=int, default=320, help='padded input width (default 320)')
    p.add_argument('--keys', default=None, help='ppocr_keys_v1.txt (default: the dynaprec cache)')
    p.add_argument('--degrade', type=parse_degrade, default=None, metavar='START:END[:KIND]')
    p.add_argument('--min-size', type=int, default=28, help='smallest font size in px')
    p.add_argument('--max-size', type=int, default=44, help='largest font size in px')
    p.add_argument('--bgr', action='store_true',
                   help='channel order B,G,R (what PaddleOCR feeds after cv2.imread); default RGB')
    args = p.parse_args(argv)

    keys_path = args.keys or default_keys_path()
    if not os.path.isfile(keys_path):
        sys.exit(f'make_textlines: keys file {keys_path} not found (run scripts/fetch_models.sh '
                 'or pass --keys)')
    alphabet = set(read_keys(keys_path)) | {' '}
    os.makedirs(os.path.join(args.out, 'images'), exist_ok=True)
    d0, d1, kind = args.degrade if args.degrade else (0, 0, None)

    lines = np.zeros((args.count, 3, REC_H, args.width), np.float32)
    labels, samples = [], []
    for i in range(args.count):
        rng = sample_rng(args.seed, i)
        text = make_text(rng, alphabet)
        font = FONTS[rng.integers(len(FONTS))]
        size = int(rng.integers(args.min_size, args.max_size + 1))
        crop = render_line(rng, text, font, size)
        resized = rec_resize(crop, args.width)
        degraded = d0 <= i < d1
        if degraded:
            resized = degrade(sample_rng(args.seed, i, stream=1), resized, kind)
        lines[i] = rec_normalize(resized, args.width, args.bgr)
        Image.fromarray(resized).save(os.path.join(args.out, 'images', f'{i:05d}.png'))
        labels.append(text)
        samples.append({'index': i, 'font': font, 'size': size, 'crop_w': int(crop.shape[1]),
                        'crop_h': int(crop.shape[0]), 'resized_w': int(resized.shape[1]),
                        'degraded': kind if degraded else None})

    np.save(os.path.join(args.out, 'lines.npy'), lines)
    with open(os.path.join(args.out, 'labels.txt'), 'w', encoding='utf-8', newline='\n') as f:
        f.write(''.join(t + '\n' for t in labels))
    meta = {'tool': 'make_textlines.py', 'count': args.count, 'seed': args.seed,
            'width': args.width, 'height': REC_H, 'channel_order': 'BGR' if args.bgr else 'RGB',
            'normalize': '(x/255 - 0.5)/0.5, zero right-padding', 'keys': keys_path,
            'font_sizes': [args.min_size, args.max_size],
            'degrade': {'start': d0, 'end': d1, 'kind': kind} if kind else None,
            'degraded_indices': [s['index'] for s in samples if s['degraded']],
            'squeezed': sum(1 for s in samples if s['resized_w'] == args.width),
            'samples': samples}
    with open(os.path.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    print(f'make_textlines: {args.count} lines -> {args.out}/lines.npy '
          f'[{args.count},3,{REC_H},{args.width}], {len(meta["degraded_indices"])} degraded')


if __name__ == '__main__':
    main()
