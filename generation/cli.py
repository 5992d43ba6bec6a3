"""Command line: ``python -m generation "a dog barking" -o dog.wav [--duration 5 --seed 0 ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from vocoder.audio import CORPUS_RMS_DB, load_audio, save_audio
from vocoder.cli import OneLineParser, check_input_file, check_output_path, write_atomically

from .audiogen import AudioGen
from .sampling import DEFAULT_CFG_COEF, DEFAULT_SAMPLING, SamplingParams


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m generation", description="Generate audio from a text description.")
    parser.add_argument("description", help="what the audio should sound like, e.g. 'a dog barking'")
    parser.add_argument("-o", "--output", required=True, type=Path, help="audio file to write (.wav, .flac, .ogg)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of audio in all (default 5)")
    parser.add_argument("--cfg", type=float, default=DEFAULT_CFG_COEF, help="classifier-free guidance scale (default 3; 1 = off)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible output")
    parser.add_argument("--top-k", type=int, default=DEFAULT_SAMPLING.top_k, help="sample from the k most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=DEFAULT_SAMPLING.top_p, help="nucleus sampling mass (0 = off)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_SAMPLING.temperature, help=f"sampling temperature (default {DEFAULT_SAMPLING.temperature:g}; 0 = greedy)")
    parser.add_argument("--prompt", type=Path, default=None, help="audio file to continue (its length counts in --duration)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, default=None, help="model directory with lm/ and codec/ or codec.json (default: shipped)")
    source.add_argument("--random-init", action="store_true", help="small random-weight model (noise; tests the pipeline)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--target-db", type=float, default=CORPUS_RMS_DB,
                       help=f"RMS level in dBFS, peak at most 0.95 (default {CORPUS_RMS_DB:g}, the training corpus's)")
    level.add_argument("--raw-level", action="store_true",
                       help="write the level the codec decodes (the shipped codec decodes several dB quieter)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.prompt is not None:
            check_input_file(args.prompt)
        check_output_path(args.output, inputs=[args.prompt] if args.prompt else [])
        gen = AudioGen.random_init() if args.random_init else AudioGen.from_pretrained(args.model)
        sampling = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        params = dict(duration=args.duration, cfg_coef=args.cfg, sampling=sampling, seed=args.seed,
                      progress=args.progress, target_db=None if args.raw_level else args.target_db)
        if args.prompt is not None:
            prompt, rate = load_audio(args.prompt)
            wav = gen.generate_continuation(prompt, rate, [args.description], **params)
        else:
            wav = gen.generate([args.description], **params)
        write_atomically(args.output, lambda path: save_audio(path, wav[0], gen.sample_rate))
    except (ValueError, OSError) as err:  # AudioError, CheckpointError, ConditionerError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({wav.shape[-1] / gen.sample_rate:.2f} s at {gen.sample_rate} Hz)")
    return 0
