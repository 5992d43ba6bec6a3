"""Bits per second of entropy-coded .grvq streams (format version 3) per clip set, against the fixed
10-bit codes (2 kbps with 4 codebooks, 1 kbps with 2), and the entropy coder's speed on one thread.

Clips come from the corpus manifest (``recipes.prepare_data``): the three held-out speech sources the
codec never trained on (and the entropy table was never fitted on), the validation split of the
in-domain speech, music and effects (``recipes.evaluate``'s clip sets and clips, the first
``--max-seconds`` of each). Each clip is compressed as its own stream by the shipped codec, or by
``--model DIR`` with the table beside its weights (``recipes.fit_entropy``; e.g. the streaming codec,
``codec/pretrained/streaming``); the payload is counted without header and CRC.

    python benchmarks/bench_entropy.py --manifest ~/.cache/grvq-toolkit/corpus3/manifest.jsonl [--clips 40]
        [--model DIR] [--packet-frames 1 2 5 --fit-clips 800]

``--packet-frames`` also asks what entropy coding would save inside live packets of that many code
frames: each packet must decode on its own (a lost packet may not break the next), so its coder starts
from the table every time (no previous frame for the first, no adaptive counts). For each size a table
is fitted on ``--fit-clips`` train-split recordings cut into such packets (a packet of one frame has
only the same frame's other codes as context), and each held-out speech clip's packets are
arithmetic-coded; printed: the mean payload bytes against the fixed codes', and the saving if each
packet took the smaller of the two (a flag per packet).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from codec import Codec, bitstream, entropy
from recipes.evaluate import CLIP_SETS, choose_clips
from recipes.fit_entropy import codebook_vectors, train_codes


def entropy_rates(codec: Codec, table: entropy.EntropyTable, clips) -> dict:
    """Payload bits per second of each clip ``(name, [1, T])`` coded as its own entropy-coded stream with
    all codebooks and with the first level only (``bps[K]``), and the coder's encode + decode time as a
    share of the audio's duration; every stream is checked to decode to its codes."""
    seconds = coder_s = 0.0
    bits = {codec.num_codebooks: 0.0, codec.quantizer.config.groups: 0.0}
    for _, wav in clips:
        header, codes = bitstream.unpack(codec.compress(wav, codec.sample_rate, entropy_coding=False))
        started = time.perf_counter()
        payload = entropy.encode_codes(codes, table)
        back = entropy.decode_codes(payload, table, *codes.shape)
        coder_s += time.perf_counter() - started
        assert np.array_equal(back, codes)
        for books in bits:
            bits[books] += 8 * len(payload if books == codes.shape[1] else entropy.encode_codes(codes[:, :books], table))
        seconds += header.length / header.sample_rate
    return {"seconds": seconds, "bps": {books: b / max(seconds, 1e-9) for books, b in bits.items()},
            "coder_x_real_time": coder_s / max(seconds, 1e-9)}


def packet_pieces(clips, frames: int):
    """Each clip's codes ``[K, F]`` cut into whole packets of ``frames`` code frames."""
    return [c[:, i:i + frames] for c in clips for i in range(0, c.shape[1] - frames + 1, frames)]


def packet_rows(codec: Codec, manifest: Path, sizes, fit_clips: int, clips: int, max_seconds: float) -> None:
    """Payload bytes of packets of each size in ``sizes`` (code frames), entropy-coded on their own."""
    train = train_codes(codec, manifest, fit_clips, max_seconds)
    q = codec.quantizer
    groups, books, bits = q.config.groups, codec.num_codebooks, q.config.bits_per_code
    vectors = codebook_vectors(codec)
    held_out = {s.name: [codec.encode(wav, codec.sample_rate, progress=False)[0].numpy()
                         for _, wav in choose_clips(manifest, replace(s, count=clips), max_seconds)]
                for s in CLIP_SETS if s.name.startswith("speech, held out")}
    print("\n| packet (code frames) | fixed payload, bytes | " + " | ".join(held_out) + " |")
    print("|---|---|" + "---|" * len(held_out))
    for frames in sizes:
        kinds = None if frames > 1 else [("prev",) + (("group0",) if k % groups else ()) + (("level0",) if k >= groups else ())
                                          for k in range(books)]  # "prev" has only its no-context row here
        table = entropy.fit_table(packet_pieces(train, frames), vectors, groups, codec.fingerprint(), kinds=kinds,
                                  increment=0)
        fixed = -(-frames * books * bits // 8)
        cells = []
        for clips_codes in held_out.values():
            sizes_ = np.array([len(entropy.encode_codes(p[None], table)) for p in packet_pieces(clips_codes, frames)])
            cells.append(f"{sizes_.mean():.1f} ({1 - sizes_.mean() / fixed:+.1%}; smaller of two "
                         f"{1 - np.minimum(sizes_, fixed).mean() / fixed:+.1%})")
        print(f"| {frames} ({frames * 1000 // codec.frame_rate:.0f} ms) | {fixed} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=24, help="clips per set (the report's choice and order)")
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--model", type=Path, help="a saved codec with its entropy table (default: the shipped codec)")
    parser.add_argument("--packet-frames", type=int, nargs="*", default=[], help="packet sizes to study (code frames)")
    parser.add_argument("--fit-clips", type=int, default=800, help="train-split recordings for the packet tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.model)
    table = entropy.table_for(codec.fingerprint())
    if table is None:
        parser.error(f"{args.model} has no entropy table: fit one with python -m recipes.fit_entropy --model {args.model}")
    print(f"entropy table {table.table_id.hex()} for model {codec.fingerprint().hex()}; torch threads 1")
    books, level = codec.num_codebooks, codec.quantizer.config.groups
    full, first = codec.bitrate_for(books), codec.bitrate_for(level)
    print(f"| clip set | clips | seconds | {books} codebooks: b/s (vs {full:.0f}) | saving | {level} codebooks: b/s "
          f"(vs {first:.0f}) | saving | entropy encode+decode x real time |")
    print("|---|---|---|---|---|---|---|---|")
    for clip_set in CLIP_SETS:
        clips = choose_clips(args.manifest, replace(clip_set, count=args.clips), args.max_seconds)
        rates = entropy_rates(codec, table, clips)
        print(f"| {clip_set.name} | {len(clips)} | {rates['seconds']:.0f} | {rates['bps'][books]:.0f} | "
              f"{1 - rates['bps'][books] / full:.1%} | {rates['bps'][level]:.0f} | {1 - rates['bps'][level] / first:.1%} | "
              f"{rates['coder_x_real_time']:.3f} |", flush=True)
    if args.packet_frames:
        packet_rows(codec, args.manifest, args.packet_frames, args.fit_clips, args.clips, args.max_seconds)


if __name__ == "__main__":
    main()
