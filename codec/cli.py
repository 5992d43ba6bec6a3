"""Command line: ``python -m codec encode IN OUT.grvq`` and ``python -m codec decode IN.grvq OUT.wav``.

Any format libsndfile reads is accepted (down-mixed to mono, resampled to the model's rate).
Every expected failure (missing or unreadable file, empty or non-finite audio, unsupported rate,
damaged stream, stream from another model, bad model directory) ends with one ``error:`` line on
stderr and exit status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import soundfile as sf
import torch

from vocoder.audio import AudioError, load_audio, save_audio
from vocoder.checkpoint import CheckpointError

from .bitstream import BitstreamError
from .config import CodecConfig
from .model import Codec

RANDOM_INIT_SEED = 0


def parse_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {name!r} requested but CUDA is not available")
    return device


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m codec", description="GRVQ neural audio codec: audio <-> .grvq streams.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_model_options(sub: argparse.ArgumentParser) -> None:
        source = sub.add_mutually_exclusive_group()
        source.add_argument("--model", type=Path, help="model directory (config.json + model.safetensors); "
                                                        "default: the model shipped with the toolkit")
        source.add_argument("--random-init", action="store_true",
                            help=f"use an UNTRAINED model with random weights (seed {RANDOM_INIT_SEED}) to "
                                 "demonstrate the round trip; the audio will not resemble the input")
        sub.add_argument("--device", type=parse_device, default="cuda" if torch.cuda.is_available() else "cpu",
                         help="torch device (default: cuda if available, else cpu)")

    encode = commands.add_parser("encode", help="audio file -> .grvq stream")
    encode.add_argument("input", type=Path, help="audio file (any format libsndfile reads)")
    encode.add_argument("output", type=Path, help="output .grvq file")
    encode.add_argument("--codebooks", type=int, default=None,
                        help="number of codebooks (a multiple of the groups; default: all = highest bitrate)")
    add_model_options(encode)

    decode = commands.add_parser("decode", help=".grvq stream -> audio file")
    decode.add_argument("input", type=Path, help=".grvq file")
    decode.add_argument("output", type=Path, help="output audio file; format from the extension (.wav, .flac, ...)")
    decode.add_argument("--refine", type=int, default=None, metavar="N",
                        help="spectral codec: phase refinement iterations of its vocoder (default: the vocoder's "
                             "default; more is slower and better, 0 is the network alone)")
    add_model_options(decode)
    return parser


def load_model(args: argparse.Namespace) -> Codec:
    if args.random_init:
        print(f"warning: using an untrained random-weight model (seed {RANDOM_INIT_SEED}); "
              "the decoded audio will not resemble the input", file=sys.stderr)
        # Seeded on a forked RNG so encode and decode build the same weights (same fingerprint).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = Codec(CodecConfig())
        return model.to(args.device).eval()
    if args.model is None and not (Codec.default_pretrained / "model.safetensors").is_file():
        raise CheckpointError("no shipped codec model yet: pass --model DIR (or --random-init to demonstrate)")
    return Codec.from_pretrained(args.model, device=args.device)


def encode_file(args: argparse.Namespace) -> None:
    wav, sample_rate = load_audio(args.input)
    model = load_model(args)
    num_codebooks = model.quantizer.check_num_codebooks(args.codebooks)
    data = model.compress(wav, sample_rate, num_codebooks)
    args.output.write_bytes(data)
    duration = wav.shape[-1] / sample_rate
    print(f"{args.input} -> {args.output}: {duration:.2f} s, {num_codebooks} codebooks, "
          f"{model.bitrate_for(num_codebooks) / 1000:.2f} kbps; {args.input.stat().st_size} -> {len(data)} bytes "
          f"({8 * len(data) / duration / 1000:.2f} kbps with header)")


def decode_file(args: argparse.Namespace) -> None:
    if not args.input.is_file():
        raise BitstreamError(f"no such stream file: {args.input}")
    data = args.input.read_bytes()
    model = load_model(args)
    audio, sample_rate = model.decompress(data, refine=args.refine)
    if audio.shape[0] != 1:
        raise BitstreamError(f"stream holds {audio.shape[0]} signals; decode it with Codec.decompress")
    try:
        save_audio(args.output, audio[0].cpu(), sample_rate)
    except (sf.LibsndfileError, TypeError, ValueError) as err:
        raise AudioError(f"cannot write {args.output}: {err}") from None
    duration = audio.shape[-1] / sample_rate
    print(f"{args.input} -> {args.output}: {duration:.2f} s at {sample_rate} Hz, {len(data)} bytes "
          f"({8 * len(data) / duration / 1000:.2f} kbps with header)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "encode":
            encode_file(args)
        else:
            decode_file(args)
    except (AudioError, BitstreamError, CheckpointError, ValueError, OSError) as err:
        message = " ".join(str(err).split())  # some library messages span several lines
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0
