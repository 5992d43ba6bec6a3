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

from vocoder.audio import AudioError, load_audio, save_audio
from vocoder.checkpoint import CheckpointError
from vocoder.cli import (RANDOM_INIT_SEED, OneLineParser, check_input_file, check_output_path, default_device,
                         parse_device, seeded, write_atomically)

from .bitstream import BitstreamError
from .model import Codec, SpectralCodec


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m codec", description="GRVQ neural audio codec: audio <-> .grvq streams.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def add_model_options(sub: argparse.ArgumentParser) -> None:
        source = sub.add_mutually_exclusive_group()
        source.add_argument("--model", type=Path, help="model directory (config.json + model.safetensors); "
                                                        "default: the model shipped with the toolkit")
        source.add_argument("--random-init", action="store_true",
                            help=f"use an UNTRAINED model with random weights (seed {RANDOM_INIT_SEED}) to "
                                 "demonstrate the round trip; the audio will not resemble the input")
        sub.add_argument("--device", type=parse_device, default=default_device(),
                         help="torch device (default: cuda if available, else cpu)")

    encode = commands.add_parser("encode", help="audio file -> .grvq stream")
    encode.add_argument("input", type=Path, help="audio file (any format libsndfile reads)")
    encode.add_argument("output", type=Path, help="output .grvq file")
    encode.add_argument("--codebooks", type=int, default=None,
                        help="number of codebooks (a multiple of the groups; default: all = highest bitrate)")
    encode.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="code the input at its own level instead of at the corpus level (the stream "
                             "then carries no gain to restore)")
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
        with seeded(RANDOM_INIT_SEED):  # encode and decode build the same weights (same fingerprint)
            model = SpectralCodec()
        return model.to(args.device).eval()
    if args.model is None and not (Codec.default_pretrained / "model.safetensors").is_file():
        raise CheckpointError("no shipped codec model yet: pass --model DIR (or --random-init to demonstrate)")
    return Codec.from_pretrained(args.model, device=args.device)


def encode_file(args: argparse.Namespace) -> None:
    check_input_file(args.input)
    check_output_path(args.output, inputs=[args.input], audio=False)
    wav, sample_rate = load_audio(args.input)
    model = load_model(args)
    num_codebooks = model.quantizer.check_num_codebooks(args.codebooks)
    data = model.compress(wav, sample_rate, num_codebooks, normalize=args.normalize)
    write_atomically(args.output, lambda path: path.write_bytes(data))
    duration = wav.shape[-1] / sample_rate
    print(f"{args.input} -> {args.output}: {duration:.2f} s, {num_codebooks} codebooks, "
          f"{model.bitrate_for(num_codebooks) / 1000:.2f} kbps; {args.input.stat().st_size} -> {len(data)} bytes "
          f"({8 * len(data) / duration / 1000:.2f} kbps with header)")


def decode_file(args: argparse.Namespace) -> None:
    check_input_file(args.input, "stream file")
    check_output_path(args.output, inputs=[args.input])
    data = args.input.read_bytes()
    model = load_model(args)
    audio, sample_rate = model.decompress(data, refine=args.refine)
    if audio.shape[0] != 1:
        raise BitstreamError(f"stream holds {audio.shape[0]} signals; decode it with Codec.decompress")
    try:
        write_atomically(args.output, lambda path: save_audio(path, audio[0].cpu(), sample_rate))
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
