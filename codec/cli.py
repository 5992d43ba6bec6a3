"""Command line: ``python -m codec encode IN OUT.grvq`` and ``python -m codec decode IN.grvq OUT.wav``;
live coding through pipes with ``stream-encode`` (raw 16-bit mono PCM at 16 kHz on stdin -> packet
stream on stdout) and ``stream-decode`` (the reverse)::

    arecord -f S16_LE -r 16000 -c 1 | python -m codec stream-encode | python -m codec stream-decode | aplay -f S16_LE -r 16000

Any format libsndfile reads is accepted (down-mixed to mono, resampled to the model's rate).
Every expected failure (missing or unreadable file, empty or non-finite audio, unsupported rate,
damaged stream, stream from another model, bad model directory) ends with one ``error:`` line on
stderr and exit status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import soundfile as sf
import torch

from vocoder.audio import AudioError, load_audio, save_audio
from vocoder.checkpoint import CheckpointError
from vocoder.cli import (RANDOM_INIT_SEED, OneLineParser, check_input_file, check_output_path, default_device,
                         parse_device, seeded, write_atomically)

from .bitstream import CODING_CONTEXT, ENTROPY_CODING_DEFAULT, BitstreamError, read_header
from .model import Codec, SpectralCodec
from .streaming import STREAM_HEAD_BYTES, StreamPreamble, frame_packet, read_exactly, read_framed, to_pcm16

DEFAULT_STREAMING = Path(__file__).parent / "pretrained" / "streaming"


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
    coding = encode.add_mutually_exclusive_group()
    coding.add_argument("--entropy-coding", dest="entropy_coding", action="store_true",
                        default=ENTROPY_CODING_DEFAULT,
                        help="arithmetic-code the codes with the model's integer context model (format "
                             "version 3) when that is smaller" + (" (the default)" if ENTROPY_CODING_DEFAULT else ""))
    coding.add_argument("--fixed-codes", dest="entropy_coding", action="store_false",
                        help="store fixed-width codes (format version 2, readable by older toolkits)")
    add_model_options(encode)

    decode = commands.add_parser("decode", help=".grvq stream -> audio file")
    decode.add_argument("input", type=Path, help=".grvq file")
    decode.add_argument("output", type=Path, help="output audio file; format from the extension (.wav, .flac, ...)")
    decode.add_argument("--refine", type=int, default=None, metavar="N",
                        help="spectral codec: phase refinement iterations of its vocoder (default: the vocoder's "
                             "default; more is slower and better, 0 is the network alone)")
    add_model_options(decode)

    def add_stream_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", type=Path, default=None,
                         help="a causal (streaming) codec directory; default: the shipped streaming model")
        sub.add_argument("--threads", type=int, default=1,
                         help="CPU threads for torch (default 1: the codec is sized for real time on one)")

    stream_encode = commands.add_parser(
        "stream-encode", help="raw 16-bit mono PCM at the model's rate (16 kHz) on stdin -> packet stream on stdout")
    stream_encode.add_argument("--codebooks", type=int, default=None,
                               help="codebooks per packet (2: 1 kbps, 4: 2 kbps with the default layout; default all)")
    add_stream_options(stream_encode)
    stream_decode = commands.add_parser(
        "stream-decode", help="packet stream on stdin -> raw 16-bit mono PCM at the model's rate on stdout")
    add_stream_options(stream_decode)
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
    data = model.compress(wav, sample_rate, num_codebooks, normalize=args.normalize,
                          entropy_coding=args.entropy_coding)
    write_atomically(args.output, lambda path: path.write_bytes(data))
    duration = wav.shape[-1] / sample_rate
    coding = "entropy-coded" if read_header(data).coding == CODING_CONTEXT else "fixed-width codes"
    print(f"{args.input} -> {args.output}: {duration:.2f} s, {num_codebooks} codebooks, "
          f"{model.bitrate_for(num_codebooks) / 1000:.2f} kbps nominal, {coding}; {args.input.stat().st_size} -> "
          f"{len(data)} bytes ({8 * len(data) / duration / 1000:.2f} kbps with header)")


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


def load_streaming_model(args: argparse.Namespace) -> Codec:
    """The ``--model`` codec (default: the shipped streaming model), which must be causal, on the CPU."""
    if args.threads < 1:
        raise ValueError(f"--threads must be positive, got {args.threads}")
    torch.set_num_threads(args.threads)
    directory = args.model
    if directory is None:
        if not (DEFAULT_STREAMING / "model.safetensors").is_file():
            raise CheckpointError(f"no streaming codec has been trained yet ({DEFAULT_STREAMING} is empty): fine-tune "
                                  "one with recipes/configs/codec_streaming.yaml and pass --model DIR")
        directory = DEFAULT_STREAMING
    model = Codec.from_pretrained(directory, device="cpu")
    if not model.streaming:
        raise CheckpointError(f"{directory} holds an offline codec (it looks ahead); streaming needs a causal one "
                              "(SpectralCodecConfig.streaming(), recipes/configs/codec_streaming.yaml)")
    return model


def stream_encode(args: argparse.Namespace) -> None:
    """PCM from stdin, packets to stdout as they are made (flushed per read, for low latency)."""
    model = load_streaming_model(args)
    encoder = model.stream_encoder(args.codebooks)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sink.write(StreamPreamble.of(model).pack())
    sink.flush()
    carry = b""
    read = getattr(source, "read1", source.read)  # read1: whatever has arrived, so frames leave as they fill
    while True:
        chunk = read(4096)
        if not chunk:
            break
        chunk, carry = carry + chunk, b""
        if len(chunk) % 2:  # a sample split across reads waits for its second byte
            chunk, carry = chunk[:-1], chunk[-1:]
        packets = encoder.push(chunk)
        if packets:
            sink.write(b"".join(frame_packet(p) for p in packets))
            sink.flush()
    if carry:
        print("warning: odd trailing byte of input ignored (16-bit PCM has two per sample)", file=sys.stderr)
    sink.write(b"".join(frame_packet(p) for p in encoder.flush()))
    sink.flush()


def stream_decode(args: argparse.Namespace) -> None:
    """Packets from stdin, PCM to stdout as each packet is decoded; a damaged packet is concealed."""
    model = load_streaming_model(args)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    head = read_exactly(source, STREAM_HEAD_BYTES)
    if not head:
        raise BitstreamError("empty input: expected a packet stream from 'python -m codec stream-encode'")
    StreamPreamble.unpack(head).check(model)
    decoder = model.stream_decoder()
    index = 0
    while True:
        packet = read_framed(source)
        if packet is Ellipsis:
            break
        try:
            samples = decoder.push(packet)
        except BitstreamError as err:
            print(f"warning: packet {index} concealed: {err}", file=sys.stderr)
            samples = decoder.push(None)
        index += 1
        if samples.size:
            sink.write(to_pcm16(samples))
            sink.flush()
    sink.write(to_pcm16(decoder.flush()))
    sink.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"encode": encode_file, "decode": decode_file, "stream-encode": stream_encode,
                "stream-decode": stream_decode}
    try:
        commands[args.command](args)
    except BrokenPipeError:  # the reader went away (e.g. aplay stopped): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit has somewhere to go
        return 0
    except (AudioError, BitstreamError, CheckpointError, ValueError, OSError) as err:
        message = " ".join(str(err).split())  # some library messages span several lines
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0
