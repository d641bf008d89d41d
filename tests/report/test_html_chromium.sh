#!/usr/bin/env bash
# The HTML report in a real browser: headless Chromium (Debian `chromium`) loads pages written by
# dynaprec_report_tests (a small run, 1,000 portions x 300 layers, an empty report), takes a
# screenshot of each and dumps the DOM after the scripts ran. Fails when a screenshot is blank,
# when the page's script did not finish (body[data-rendered="ok"]) or when any script error was
# raised (window.onerror sets body[data-errors]; Chromium's console log is searched as well).
#   test_html_chromium.sh path/to/dynaprec_report_tests
# Exit 77 (skip) when chromium or python3-PIL is missing.
set -euo pipefail
tests_bin=$1
if ! command -v chromium >/dev/null 2>&1; then
  echo "test_html_chromium: chromium not installed (apt-get install chromium): skipped"
  exit 77
fi
py=""
for p in /usr/bin/python3 python3; do  # Debian's python3-pil lives with /usr/bin/python3
  if "$p" -c 'import PIL' 2>/dev/null; then py=$p; break; fi
done
if [[ -z $py ]]; then
  echo "test_html_chromium: python3-pil not installed: skipped"
  exit 77
fi
tmp=$(mktemp -d)
keep=${DYNAPREC_KEEP_SCREENSHOTS:-}  # a directory: the screenshots are copied there
trap 'rm -rf "$tmp"' EXIT
DYNAPREC_HTML_OUT=$tmp "$tests_bin" --gtest_filter=Html.WriteForBrowser >/dev/null

chrome() {
  timeout 180 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/profile" \
    --no-first-run --hide-scrollbars --enable-logging=stderr --v=0 \
    --virtual-time-budget=15000 "$@"
}

fail=0
for page in small large empty; do
  url="file://$tmp/$page.html"
  chrome --window-size=1280,2200 --screenshot="$tmp/$page.png" "$url" >/dev/null 2>"$tmp/$page.shot.log" || true
  chrome --dump-dom "$url" >"$tmp/$page.dom" 2>"$tmp/$page.dom.log" || true
  if [[ ! -s $tmp/$page.png ]]; then
    echo "FAIL $page: no screenshot"; tail -5 "$tmp/$page.shot.log"; fail=1; continue
  fi
  if ! grep -q 'data-rendered="ok"' "$tmp/$page.dom"; then
    echo "FAIL $page: the page's script did not finish"; fail=1
  fi
  if grep -qE '<body[^>]*data-errors' "$tmp/$page.dom"; then
    echo "FAIL $page: script errors:"; grep -o 'id="errors"[^<]*>[^<]*' "$tmp/$page.dom" | head -5
    fail=1
  fi
  if grep -hE 'CONSOLE.*(Uncaught|Error)|Uncaught ' "$tmp/$page.shot.log" "$tmp/$page.dom.log"; then
    echo "FAIL $page: errors in the console"; fail=1
  fi
  # Not blank: several colours, and a visible share of pixels that are not the background.
  if ! "$py" - "$tmp/$page.png" "$page" <<'PY'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert('RGB')
w, h = im.size
small = im.resize((w // 4, h // 4))
px = list(small.getdata())
colours = len(set(px))
bg = max(set(px), key=px.count)
busy = sum(1 for p in px if sum(abs(a - b) for a, b in zip(p, bg)) > 30) / len(px)
print(f'{sys.argv[2]}: {w}x{h}, {colours} colours, {busy:.1%} non-background')
need = 0.02 if sys.argv[2] == 'empty' else 0.10
sys.exit(0 if colours >= 8 and busy >= need else 1)
PY
  then
    echo "FAIL $page: the screenshot looks blank"; fail=1
  fi
done
if [[ -n $keep ]]; then mkdir -p "$keep" && cp "$tmp"/*.png "$keep"/; fi
if ((fail)); then
  exit 1
fi
echo "test_html_chromium: ok"
