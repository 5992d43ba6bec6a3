"""Streaming codec (issue 25): algorithmic latency, compute per 20 ms frame on one CPU thread, and
quality on held-out speech against the offline codec, Opus and Codec2, with 0/5/10 % packet loss.

The streaming codec is ``--model DIR`` (a ``SpectralCodecConfig.streaming()`` model), by default
``codec/pretrained/streaming`` when it exists, otherwise the causal variant at the shipped size
warm-started from the shipped offline codec's weights: "not fine-tuned" for streaming, so its quality
rows show where the fine-tuning starts from.

**Compute.** Each repeat codes ``--seconds`` of a chirp with noise through ``StreamEncoder``/
``StreamDecoder`` one frame at a time, as a live stream would; encode and decode repeats are interleaved
so that load from other processes hits both alike. The fastest repeat and the median are printed per
20 ms frame, with the real-time share of encode + decode against the targets (latency <= 40 ms,
encode + decode <= 20 % of real time on one thread).

**Quality.** On each held-out speech set of ``recipes.evaluate`` (its clips, first ``--max-seconds`` of
each, and its scoring: PESQ-wb and STOI): the whole clip pushed through a ``StreamEncoder`` and flushed,
the packets decoded by a ``StreamDecoder`` with each packet lost at random at every ``--loss`` rate
(``codec.streaming.random_losses``, seeded per clip; a lost packet is pushed as ``None`` and concealed)
and cut to the clip's length (the decoder's output is aligned with the encoder's input); beside it the
shipped offline codec at the same bitrate (``encode``/``decode`` as ``recipes.evaluate`` codes it), Opus
6 kbps and Codec2 2.4 kbps. Against the targets: streaming without loss within 0.2 PESQ and 0.03 STOI of
offline, above Codec2 2.4 kbps on both, and 5 % loss costing at most 0.3 PESQ.

**Bits.** The packets' payload (fixed codes) and wire rates, and on every clip set of
``recipes.evaluate`` the bits per second of the same model's ``.grvq`` streams entropy-coded with the
table beside its weights (``recipes.fit_entropy``), against the nominal rate.

    python benchmarks/bench_streaming.py [--threads 1] [--repeats 5] [--seconds 4] [--model DIR] [--codebooks 2]
        [--manifest ~/.cache/grvq-toolkit/corpus3/manifest.jsonl] [--clips 24] [--loss 0 5 10]
        [--json PATH] [--no-quality]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec import Codec, SpectralCodec, SpectralCodecConfig  # noqa: E402
from codec.model import DEFAULT_PRETRAINED, read_saved_codec  # noqa: E402
from codec.streaming import algorithmic_latency, decode_with_losses, random_losses  # noqa: E402
from recipes.evaluate import CLIP_SETS, HELD_OUT_SPEECH, SAMPLE_RATE, choose_clips, codec2, opus, score  # noqa: E402
from bench_entropy import entropy_rates  # noqa: E402
from codec import entropy  # noqa: E402
from codec.streaming import PACKET_OVERHEAD  # noqa: E402
from timing import count_parameters, interleaved_timings  # noqa: E402
from vocoder.metrics import MetricAverager  # noqa: E402

LATENCY_TARGET_MS = 40.0
REAL_TIME_TARGET = 0.20
PESQ_OF_OFFLINE, STOI_OF_OFFLINE = 0.2, 0.03  # streaming without loss within this much of offline
PESQ_COST_OF_5_PERCENT_LOSS = 0.3
SHIPPED_STREAMING = Path(__file__).resolve().parents[1] / "codec" / "pretrained" / "streaming"
DEFAULT_MANIFEST = Path("~/.cache/grvq-toolkit/corpus3/manifest.jsonl").expanduser()
OFFLINE, OPUS, CODEC2 = "offline codec", "Opus 6 kbps", "Codec2 2.4 kbps"
Metrics = Dict[str, float]


def test_signal(seconds: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(0)
    return (0.4 * np.sin(2 * math.pi * (100 + 200 * t) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def streaming_codec(directory: Optional[Path]) -> Tuple[Codec, str]:
    """The streaming codec in ``directory``, else ``codec/pretrained/streaming``, else the causal codec
    at the shipped size warm-started from the shipped offline weights; and where its weights came from."""
    if directory is None and (SHIPPED_STREAMING / "model.safetensors").is_file():
        directory = SHIPPED_STREAMING
    if directory is not None:
        model = Codec.from_pretrained(directory).eval()
        if not model.streaming:
            raise ValueError(f"{directory} holds an offline codec: --model takes a SpectralCodecConfig.streaming() one")
        return model, str(directory)
    if (DEFAULT_PRETRAINED / "model.safetensors").is_file():
        _, saved, _ = read_saved_codec(DEFAULT_PRETRAINED)
        model = SpectralCodec(SpectralCodecConfig.streaming(vocoder=saved.vocoder))
        model.load_weights_from(DEFAULT_PRETRAINED)
        return model.eval(), "shipped offline weights, warm start: not fine-tuned for streaming"
    torch.manual_seed(0)
    return SpectralCodec(SpectralCodecConfig.streaming()).eval(), "random weights"


# ------------------------------------------------------------------------------------ latency, compute


def measure_compute(model: Codec, seconds: float, repeats: int, num_codebooks: Optional[int] = None
                    ) -> Dict[str, List[float]]:
    """Wall seconds of each encode and decode repeat over ``seconds`` of test signal, frame by frame."""
    hop = model.hop_length
    pcm = test_signal(seconds, model.sample_rate)
    frames = [pcm[first:first + hop] for first in range(0, len(pcm) // hop * hop, hop)]
    packets = model.stream_encoder(num_codebooks).push(pcm)

    def encode() -> None:
        encoder = model.stream_encoder(num_codebooks)
        for frame in frames:
            encoder.push(frame)

    def decode() -> None:
        decoder = model.stream_decoder()
        for packet in packets:
            decoder.push(packet)

    times = interleaved_timings({"encode": encode, "decode": decode}, repeats)
    return {name: [t / len(frames) * 1000 for t in values] for name, values in times.items()}  # ms per frame


def report_compute(model: Codec, weights: str, seconds: float, repeats: int, num_codebooks: Optional[int] = None
                   ) -> dict:
    """Print latency and compute per frame; the numbers for ``--json``."""
    frame_ms = 1000 * model.hop_length / model.sample_rate
    ms = measure_compute(model, seconds, repeats, num_codebooks)
    latency = algorithmic_latency(model)
    print(f"streaming codec: {count_parameters(model) / 1e6:.1f} M parameters ({weights}); "
          f"{torch.get_num_threads()} thread(s), {int(seconds * 1000 / frame_ms)} frames of {frame_ms:.0f} ms")
    print(f"algorithmic latency: {latency.total_ms:.1f} ms = frame {latency.frame_ms:.1f} + lookahead "
          f"{latency.lookahead_ms:.1f} + synthesis {latency.synthesis_ms:.1f}  "
          f"(target <= {LATENCY_TARGET_MS:.0f}: {met(latency.total_ms <= LATENCY_TARGET_MS)})")
    # One frame at a time every weight is read once per frame: on a CPU the weight bytes, not the
    # arithmetic, set the floor (dense layers on 1-2 frames are matrix-vector products).
    megabytes = {name: 4 * count_parameters(part) / 1e6 for name, part in (("encode", model.encoder),
                                                                            ("decode", model.decoder))}
    print(f"weights read per frame: encode {megabytes['encode']:.1f} MB, decode {megabytes['decode']:.1f} MB (fp32)")
    print(f"{'':8} {'best ms/frame':>14} {'median ms/frame':>16} {'x real time (best)':>19}")
    for name, values in ms.items():
        print(f"{name:8} {min(values):14.2f} {statistics.median(values):16.2f} {min(values) / frame_ms:19.3f}")
    best_total = sum(min(values) for values in ms.values())
    share = best_total / frame_ms
    print(f"{'total':8} {best_total:14.2f} {'':16} {share:19.3f}  "
          f"(target <= {REAL_TIME_TARGET:.2f}: {met(share <= REAL_TIME_TARGET)}; "
          f"real-time margin {frame_ms / best_total:.1f}x)")
    return {"latency_ms": {"total": latency.total_ms, "frame": latency.frame_ms, "lookahead": latency.lookahead_ms,
                           "synthesis": latency.synthesis_ms},
            "ms_per_frame": {name: {"best": min(v), "median": statistics.median(v), "repeats": v}
                             for name, v in ms.items()},
            "real_time_share": share}


# -------------------------------------------------------------------------------------------- quality


def loss_name(percent: float) -> str:
    return f"streaming, {percent:g} % loss"


def stream_packets(model: Codec, wav: torch.Tensor, num_codebooks: Optional[int] = None) -> List[bytes]:
    """A clip ``[1, T]`` pushed through a StreamEncoder at once, then flushed: every packet of it."""
    encoder = model.stream_encoder(num_codebooks)
    return encoder.push(wav[0].numpy()) + encoder.flush()


def score_streaming(model: Codec, clips: Sequence[Tuple[str, torch.Tensor]], losses: Sequence[float],
                    num_codebooks: Optional[int] = None) -> Dict[str, Metrics]:
    """Metrics of the streaming codec at each loss rate (percent); ``lost``: the share of packets lost."""
    averagers = {percent: MetricAverager() for percent in losses}
    for index, (_, wav) in enumerate(clips):
        packets = stream_packets(model, wav, num_codebooks)  # the encoder's packets do not depend on the channel
        for percent, metrics in averagers.items():
            lost = random_losses(len(packets), percent / 100, seed=index)
            audio = decode_with_losses(model, packets, lost, wav.shape[-1])
            score(wav, torch.from_numpy(audio)[None], True, metrics)
            metrics.add("lost", float(lost.mean()))
    return {loss_name(percent): metrics.means() for percent, metrics in averagers.items()}


def score_system(code: Callable[[torch.Tensor], torch.Tensor], clips: Sequence[Tuple[str, torch.Tensor]]) -> Metrics:
    """Metrics of one offline system over the clips, as ``recipes.evaluate.evaluate_codec`` scores them."""
    metrics = MetricAverager()
    for _, wav in clips:
        score(wav, code(wav), True, metrics)
    return metrics.means()


def baselines(num_codebooks: int) -> Dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The shipped offline codec at the streaming bitrate, Opus 6 kbps and Codec2 2.4 kbps (each left
    out when its tool is missing), coded as ``recipes.evaluate.evaluate_codec`` codes them."""
    offline = Codec.from_pretrained()
    systems = {OFFLINE: lambda wav: offline.decode(offline.encode(wav, SAMPLE_RATE, num_codebooks=num_codebooks))[0]}
    for name, code in ((OPUS, opus(6)), (CODEC2, codec2(2400))):
        if code is not None:
            systems[name] = code
    return systems


def targets(systems: Dict[str, Metrics]) -> Dict[str, Optional[dict]]:
    """The issue's quality targets on one clip set: the differences and whether each is met (None where
    a row it needs is missing)."""
    clean, lossy = systems.get(loss_name(0)), systems.get(loss_name(5))

    def diff(a: Optional[Metrics], b: Optional[Metrics], key: str) -> Optional[float]:
        return a[key] - b[key] if a and b and key in a and key in b else None

    def check(pesq: Optional[float], stoi: Optional[float], ok: Callable[[float, float], bool]) -> Optional[dict]:
        return None if pesq is None or stoi is None else {"pesq": pesq, "stoi": stoi, "met": bool(ok(pesq, stoi))}

    offline, codec2_ = systems.get(OFFLINE), systems.get(CODEC2)
    return {
        "streaming 0 % - offline": check(diff(clean, offline, "pesq"), diff(clean, offline, "stoi"),
                                         lambda p, s: p >= -PESQ_OF_OFFLINE and s >= -STOI_OF_OFFLINE),
        "streaming 0 % - Codec2 2.4 kbps": check(diff(clean, codec2_, "pesq"), diff(clean, codec2_, "stoi"),
                                                 lambda p, s: p > 0 and s > 0),
        "streaming 5 % loss - 0 % loss": check(diff(lossy, clean, "pesq"), diff(lossy, clean, "stoi"),
                                               lambda p, s: p >= -PESQ_COST_OF_5_PERCENT_LOSS),
    }


TARGET_WORDS = {"streaming 0 % - offline": f"PESQ >= -{PESQ_OF_OFFLINE}, STOI >= -{STOI_OF_OFFLINE}",
                "streaming 0 % - Codec2 2.4 kbps": "PESQ > 0, STOI > 0",
                "streaming 5 % loss - 0 % loss": f"PESQ >= -{PESQ_COST_OF_5_PERCENT_LOSS}"}


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def print_set(name: str, result: dict) -> None:
    print(f"\n{name}: {result['clips']} clips, {result['seconds']:.0f} s")
    print(f"  {'system':34} {'PESQ-wb':>8} {'STOI':>7}")
    for system, values in result["systems"].items():
        lost = f" ({values['lost']:.1%} lost)" if values.get("lost") else ""
        print(f"  {system + lost:34} {values.get('pesq', math.nan):8.2f} {values.get('stoi', math.nan):7.3f}")
    for target, value in result["targets"].items():
        verdict = "n/a (a row is missing)" if value is None else (
            f"{value['pesq']:+8.2f} {value['stoi']:+7.3f}  target {TARGET_WORDS[target]}: {met(value['met'])}")
        print(f"  {target:34} {verdict}")


def report_quality(model: Codec, manifest: Path, clips: int, max_seconds: float, losses: Sequence[float],
                   num_codebooks: Optional[int] = None) -> dict:
    """Score every held-out speech set, print each as it is done; ``{set name: numbers}``."""
    num_codebooks = model.quantizer.check_num_codebooks(num_codebooks)
    systems = baselines(num_codebooks)
    print(f"\nquality on held-out speech: streaming and offline at {model.bitrate_for(num_codebooks) / 1000:g} kbps, "
          f"first {max_seconds:g} s of up to {clips} clips per set (recipes.evaluate's), seeded random packet loss")
    missing = [name for name in (OPUS, CODEC2) if name not in systems]
    if missing:
        print(f"  ({' and '.join(missing)} left out: install Debian's opus-tools and codec2 for their rows)")
    results = {}
    for clip_set in (s for s in CLIP_SETS if s.name in HELD_OUT_SPEECH):
        chosen = choose_clips(manifest, replace(clip_set, count=clips), max_seconds)
        if not chosen:
            print(f"\n{clip_set.name}: no clips in {manifest}")
            continue
        rows = score_streaming(model, chosen, losses, num_codebooks)
        rows.update({name: score_system(code, chosen) for name, code in systems.items()})
        results[clip_set.name] = {"clips": len(chosen), "seconds": sum(w.shape[-1] for _, w in chosen) / SAMPLE_RATE,
                                  "systems": rows, "targets": targets(rows)}
        print_set(clip_set.name, results[clip_set.name])
    return results


def report_bits(model: Codec, manifest: Path, clips: int, max_seconds: float, num_codebooks: Optional[int] = None
                ) -> dict:
    """Bits per second per clip set: the packets' fixed codes, and ``.grvq`` streams of the same codes
    entropy-coded with the table beside the model's weights (when it has one)."""
    books = model.quantizer.check_num_codebooks(num_codebooks)
    fixed = model.bitrate_for(books)
    wire = fixed + 8 * PACKET_OVERHEAD * model.frame_rate
    print(f"\nbits per second: packets carry fixed codes, {fixed:.0f} b/s of payload ({wire:.0f} b/s with each "
          f"packet's {PACKET_OVERHEAD}-byte head and CRC; a packet must decode on its own, and entropy coding inside "
          f"one {1000 / model.frame_rate:.0f} ms packet saves nothing: benchmarks/bench_entropy.py --packet-frames)")
    table = entropy.table_for(model.fingerprint())
    if table is None:
        print("  no entropy table beside this model: `python -m recipes.fit_entropy --model DIR` fits one")
        return {"packet_payload_bps": fixed, "packet_wire_bps": wire}
    print(f"  .grvq version 3 (entropy-coded with table {table.table_id.hex()}), first {max_seconds:g} s of up to "
          f"{clips} clips per set:")
    print(f"  {'clip set':58} {'b/s':>6} {'saving':>8}")
    rows = {}
    for clip_set in CLIP_SETS:
        chosen = choose_clips(manifest, replace(clip_set, count=clips), max_seconds)
        if chosen:
            bps = entropy_rates(model, table, chosen)["bps"][books]
            rows[clip_set.name] = bps
            print(f"  {clip_set.name:58} {bps:6.0f} {1 - bps / fixed:8.1%}", flush=True)
    return {"packet_payload_bps": fixed, "packet_wire_bps": wire, "grvq_entropy_bps": rows}


def quality_skipped(args: argparse.Namespace) -> Optional[str]:
    """Why the quality rows cannot run (None: they can)."""
    if args.no_quality:
        return "quality rows skipped (--no-quality)"
    if not args.manifest.is_file():
        return (f"quality rows skipped: no corpus manifest at {args.manifest}; build the corpus with `python -m "
                f"recipes.prepare_data --out {args.manifest.parent}` (held-out speech: warzone2100-data, "
                "fillets-ng-data-cs, asterisk-core-sounds-ru-g722) or pass --manifest")
    if not (DEFAULT_PRETRAINED / "model.safetensors").is_file():
        return f"quality rows skipped: no shipped offline codec in {DEFAULT_PRETRAINED} to compare with"
    return None


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="test signal length for the compute timing")
    parser.add_argument("--model", type=Path, help="streaming codec directory (default: codec/pretrained/streaming "
                        "when it exists, else the warm start from the shipped offline codec)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                        help="corpus manifest (recipes.prepare_data)")
    parser.add_argument("--clips", type=int, default=24, help="clips per held-out speech set (the report's choice)")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="longest clip scored (the report's)")
    parser.add_argument("--codebooks", type=int, help="codebooks coded (default all: 2 kbps; 2: 1 kbps)")
    parser.add_argument("--loss", type=float, nargs="+", default=[0.0, 5.0, 10.0], help="packet loss rates, percent")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--no-quality", action="store_true", help="latency and compute only")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.repeats < 1 or not all(0 <= p < 100 for p in args.loss):
        parser.error("--clips and --repeats must be positive and --loss rates in [0, 100)")
    args.manifest = args.manifest.expanduser()
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model, weights = streaming_codec(args.model)
        model.quantizer.check_num_codebooks(args.codebooks)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = {"model": weights, "threads": torch.get_num_threads(),
               **report_compute(model, weights, args.seconds, args.repeats, args.codebooks)}
    skipped = quality_skipped(args)
    if skipped:
        print(skipped)
    else:
        with torch.inference_mode():
            results["quality"] = report_quality(model, args.manifest, args.clips, args.max_seconds, args.loss,
                                                args.codebooks)
            results["bits"] = report_bits(model, args.manifest, args.clips, args.max_seconds, args.codebooks)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
