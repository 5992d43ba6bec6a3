"""Copy synthesis from the command line: audio -> log-mel -> vocoder -> audio.

    python -m vocoder IN.wav OUT.wav [--model DIR] [--random-init] [--refine N] [--start pghi]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from .audio import AudioError, load_audio, save_audio
from .checkpoint import CheckpointError
from .cli import (RANDOM_INIT_SEED, OneLineParser, check_input_file, check_output_path, default_device,
                  parse_device, seeded, write_atomically)
from .model import PHASE_STARTS, REFINE_BEST, REFINE_DEFAULT, Vocoder, VocoderConfig


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m vocoder", description="Copy synthesis: analyse IN to a "
                           "log-mel spectrogram and resynthesise it with the vocoder into OUT.")
    parser.add_argument("input", type=Path, help="input audio file (any rate, channels are averaged)")
    parser.add_argument("output", type=Path, help="output audio file (format from the extension, e.g. .wav)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="vocoder directory (default: the shipped model)")
    source.add_argument("--random-init", action="store_true",
                        help=f"untrained vocoder with seed {RANDOM_INIT_SEED}: noise, only to test the pipeline")
    parser.add_argument("--refine", type=int, default=None, metavar="N",
                        help=f"phase refinement iterations after the network (default {REFINE_DEFAULT}; "
                             f"{REFINE_BEST} for best quality offline; 0 for the network alone)")
    parser.add_argument("--start", choices=PHASE_STARTS, default=None,
                        help="phase the refinement starts from (default: the vocoder's default)")
    parser.add_argument("--device", type=parse_device, default=default_device())
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_input_file(args.input)
        check_output_path(args.output, inputs=[args.input])
        if args.random_init:
            with seeded(RANDOM_INIT_SEED):
                vocoder = Vocoder(VocoderConfig()).to(args.device).eval()
            print(f"warning: using a RANDOMLY INITIALISED vocoder (seed {RANDOM_INIT_SEED}); "
                  "the output is not speech", file=sys.stderr)
        else:
            vocoder = Vocoder.from_pretrained(args.model, device=args.device)
        wav, sample_rate = load_audio(args.input)
        audio = vocoder.decode(vocoder.mel(wav, sample_rate), refine=args.refine, start=args.start)
        write_atomically(args.output, lambda path: save_audio(path, audio[0].cpu(), vocoder.sample_rate))
    except (AudioError, CheckpointError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({audio.shape[-1] / vocoder.sample_rate:.2f} s at {vocoder.sample_rate} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
