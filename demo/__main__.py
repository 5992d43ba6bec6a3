"""``python -m demo``: serve the Gradio demo (shipped models, or random weights when none is shipped)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import replace
from typing import List, Optional

from .app import build_app, launch
from .handlers import DemoLimits
from .models import load_models
from .workspace import Workspace


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    defaults = DemoLimits()
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Serve the Gradio demo: text to audio, continuation and codec round trips. Uses the shipped "
                    "models, or small random-weight ones (untrained: noise) when none is shipped.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--generator", metavar="DIR", help="AudioGen model directory (default: the shipped one)")
    parser.add_argument("--codec", metavar="DIR", help="codec model directory (default: the shipped one)")
    parser.add_argument("--random-init", action="store_true", help="skip loading: small random-weight models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-weight models")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--max-duration", type=float, default=defaults.max_generation_seconds,
                        help="longest generation a request may ask for, in seconds")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency,
                        help="requests computed at once; the others wait in the queue")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    limits = replace(DemoLimits(), max_generation_seconds=args.max_duration, concurrency=args.concurrency)
    models = load_models(args.generator, args.codec, random_init=args.random_init, seed=args.seed, device=args.device)
    # A plain SIGTERM (docker stop, systemd) skips atexit; exiting normally deletes the workspace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    launch(build_app(models, limits, Workspace()), limits, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
