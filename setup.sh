#!/usr/bin/env bash
# Sets up .venv for the toolkit. `./setup.sh` installs what the demo needs; `./setup.sh test` adds
# the test tools and, where apt-get is available, Debian's Chromium for the browser test.
# Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-run}"
case "$mode" in run|test) ;; *) echo "usage: ./setup.sh [test]" >&2; exit 2 ;; esac

python="${PYTHON:-python3}"
"$python" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ required"'
[ -x .venv/bin/python ] || "$python" -m venv .venv

extras=""
[ "$mode" = test ] && extras="[test]"
stamp=".venv/.installed-$mode"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing into .venv (first time: a few minutes; torch 2.9.1 is a large wheel)..."
    # On Linux x86_64 PyPI's torch is a CUDA build: about 3.5 GB of wheels unpacking to about 8 GB.
    # pip's cache would keep a second copy of the wheels, so it is off.
    export PIP_NO_CACHE_DIR=1
    free_gb="$(df -Pk .venv | awk 'NR == 2 {print int($4 / 1048576)}')"
    if [ "${free_gb:-0}" -lt 12 ] && ! ls .venv/.installed-* >/dev/null 2>&1; then
        echo "warning: ${free_gb} GB free beside .venv; installing torch may need about 12 GB" >&2
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    # torch and torchaudio first and together: torchaudio only loads beside the torch it was built for.
    .venv/bin/python -m pip install -q "torch==2.9.1" "torchaudio==2.9.1"
    .venv/bin/python -m pip install -q -e ".$extras"
    # aiSFX (the report's sound embedding) pins numpy 1.23 and librosa, neither of which it needs here.
    [ "$mode" = test ] && .venv/bin/python -m pip install -q --no-deps "aisfx==0.1.2"
    echo "$want" > "$stamp"
fi

if [ "$mode" = test ] && ! command -v chromium >/dev/null 2>&1; then
    # The browser test drives Debian's Chromium through Playwright (no browser download).
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get install -y -q chromium >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
            || echo "note: could not install chromium; the browser test will be skipped" >&2
    else
        echo "note: chromium not found and apt-get unavailable; the browser test will be skipped" >&2
    fi
fi
