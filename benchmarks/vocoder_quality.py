"""Short real-speech quality check: train the vocoder briefly on CPU, compare it with Griffin-Lim.

Trains on a few minutes of recorded speech with the reconstruction losses of
:class:`~vocoder.training.VocoderLoss` (no discriminators) for a fixed budget of *process CPU time*
(so runs sharing a busy machine stay comparable), then copy-synthesises held-out recordings and
compares against Griffin-Lim from the same mel on wide-band PESQ, STOI and mel distance.

Speech: the spoken descriptions of Debian's ``tuxpaint-stamps-default`` (GPL-2)::

    apt-get download tuxpaint-stamps-default && dpkg-deb -x tuxpaint-stamps-default_*.deb DIR
    python benchmarks/vocoder_quality.py DIR --backbone convnext --max-cpu-seconds 900

Training and held-out files are different recordings of different stamps (split by stamp name).
"""

from __future__ import annotations

import argparse
import random
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import List, Sequence

import torch
import torchaudio.functional as AF
from tqdm import tqdm

from vocoder import Vocoder, VocoderConfig, load_audio, prepare_waveform
from vocoder.metrics import MetricAverager, mel_distance, pesq_wideband, stoi
from vocoder.model import BACKBONES
from vocoder.training import VocoderLoss

# Languages recorded full-band (el and ca are band-limited to 7-9 kHz).
LANGUAGES = ("fr", "ru", "es", "ro", "bg", "be", "da", "en")


def speech_files(root: Path, languages: Sequence[str]) -> List[Path]:
    return sorted(p for p in root.rglob("*_desc_*.ogg") if p.stem.rsplit("_", 1)[-1] in languages)


def is_held_out(path: Path, fraction: float) -> bool:
    """Split by stamp (file stem without language), so held-out texts and recordings are unseen."""
    stamp = path.stem.rsplit("_desc_", 1)[0]
    return zlib.crc32(stamp.encode()) % 1000 < fraction * 1000


def load_speech(paths: Sequence[Path], sample_rate: int, max_seconds: float, desc: str) -> List[torch.Tensor]:
    clips, total = [], 0.0
    for path in tqdm(paths, desc=desc, leave=False):
        wav, rate = load_audio(path)
        wav = prepare_waveform(wav, rate, sample_rate)[0, 0]
        clips.append(wav)
        total += wav.shape[-1] / sample_rate
        if total >= max_seconds:
            break
    return clips


def random_batch(clips: Sequence[torch.Tensor], batch_size: int, length: int, rng: random.Random) -> torch.Tensor:
    batch = []
    for _ in range(batch_size):
        clip = rng.choice(clips)
        if clip.shape[-1] <= length:
            batch.append(torch.nn.functional.pad(clip, (0, length - clip.shape[-1])))
        else:
            start = rng.randrange(clip.shape[-1] - length)
            batch.append(clip[start : start + length])
    return torch.stack(batch)[:, None]


def train(vocoder: Vocoder, clips: Sequence[torch.Tensor], args: argparse.Namespace) -> int:
    """Reconstruction-only training for ``args.max_cpu_seconds`` of process CPU time; returns steps."""
    loss_fn = VocoderLoss(vocoder.config)
    optimizer = torch.optim.AdamW(vocoder.parameters(), lr=args.lr, betas=(0.8, 0.99))
    rng = random.Random(args.seed)
    length = int(args.segment_seconds * vocoder.sample_rate) // vocoder.hop_length * vocoder.hop_length
    vocoder.train()
    start, step = time.process_time(), 0
    progress = tqdm(total=int(args.max_cpu_seconds), desc="training (CPU s)", unit="s")
    while (used := time.process_time() - start) < args.max_cpu_seconds and step < args.max_steps:
        target = random_batch(clips, args.batch_size, length, rng)
        with torch.no_grad():
            mel = vocoder.mel_spectrogram(target)
        loss = loss_fn(vocoder(mel), target)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(vocoder.parameters(), 1000.0)
        optimizer.step()
        step += 1
        progress.update(int(used) - progress.n)
        if step % 50 == 0:
            progress.set_postfix(step=step, loss=f"{loss.total.item():.2f}", mel=f"{loss.terms['mel'].item():.3f}")
    progress.close()
    vocoder.eval()
    return step


def griffin_lim(vocoder: Vocoder, mel: torch.Tensor, iterations: int) -> torch.Tensor:
    """Griffin-Lim from the same log-mel: least-squares mel inversion, then phase reconstruction."""
    c = vocoder.config.mel
    fbank = vocoder.mel_spectrogram.fbank  # [n_mels, bins]
    # Minimum-norm least squares (torch.linalg.lstsq's default CPU driver returns zeros for this
    # under-determined system, so use the pseudo-inverse).
    magnitude = (torch.linalg.pinv(fbank) @ torch.exp(mel[0])).clamp(min=0.0)
    length = mel.shape[-1] * c.hop_length
    # torch's centred framing has one frame more for the same length: repeat the last one.
    magnitude = torch.cat([magnitude, magnitude[:, -1:]], dim=-1)
    window = torch.hann_window(c.win_length)
    wav = AF.griffinlim(magnitude, window, c.n_fft, c.hop_length, c.win_length, power=1.0, n_iter=iterations,
                        momentum=0.99, length=length, rand_init=True)
    # torch frames are centred on n * hop; the toolkit's "same" framing on n * hop + hop / 2.
    shift = c.hop_length // 2
    return torch.nn.functional.pad(wav, (shift, 0))[None, None, :length]


def evaluate(vocoder: Vocoder, clips: Sequence[torch.Tensor], iterations: int) -> dict:
    results = {"vocoder": MetricAverager(), "griffin-lim": MetricAverager()}
    rate = vocoder.sample_rate
    for clip in tqdm(clips, desc="evaluating", leave=False):
        mel = vocoder.mel(clip, rate)
        reference = clip[None, None, : mel.shape[-1] * vocoder.hop_length]
        outputs = {"vocoder": vocoder.decode(mel), "griffin-lim": griffin_lim(vocoder, mel, iterations)}
        for name, estimate in outputs.items():
            results[name].add("pesq_wb", pesq_wideband(reference, estimate, rate))
            results[name].add("stoi", stoi(reference, estimate, rate))
            results[name].add("mel_distance", mel_distance(reference, estimate, rate))
    return {name: averager.means() for name, averager in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="unpacked tuxpaint-stamps-default (or any folder of *_desc_LANG.ogg)")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="convnext")
    parser.add_argument("--train-minutes", type=float, default=6.0)
    parser.add_argument("--eval-files", type=int, default=24)
    parser.add_argument("--held-out-fraction", type=float, default=0.1)
    parser.add_argument("--max-cpu-seconds", type=float, default=900.0, help="training budget in process CPU time")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment-seconds", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--griffin-lim-iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="save the trained vocoder here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    vocoder = Vocoder(VocoderConfig(backbone=replace(BACKBONES[args.backbone])))
    files = speech_files(args.data, LANGUAGES)
    if not files:
        raise SystemExit(f"no *_desc_<lang>.ogg speech files under {args.data}")
    train_files = [p for p in files if not is_held_out(p, args.held_out_fraction)]
    eval_files = [p for p in files if is_held_out(p, args.held_out_fraction)]
    random.Random(args.seed).shuffle(train_files)
    random.Random(args.seed + 1).shuffle(eval_files)
    rate = vocoder.sample_rate
    train_clips = load_speech(train_files, rate, args.train_minutes * 60, "loading training speech")
    eval_clips = load_speech(eval_files[: args.eval_files], rate, float("inf"), "loading held-out speech")

    steps = train(vocoder, train_clips, args)
    if args.save:
        vocoder.save_pretrained(args.save)
    scores = evaluate(vocoder, eval_clips, args.griffin_lim_iterations)

    params = sum(p.numel() for p in vocoder.parameters()) / 1e6
    train_minutes = sum(c.shape[-1] for c in train_clips) / rate / 60
    eval_minutes = sum(c.shape[-1] for c in eval_clips) / rate / 60
    print(f"backbone {args.backbone} ({params:.2f}M params), {steps} steps in {args.max_cpu_seconds:g} CPU s "
          f"({args.threads} thread(s)), batch {args.batch_size} x {args.segment_seconds:g} s; "
          f"train {len(train_clips)} files / {train_minutes:.1f} min, held out {len(eval_clips)} files / "
          f"{eval_minutes:.1f} min")
    print(f"{'method':<14} {'PESQ-wb':>8} {'STOI':>6} {'mel dist':>9}")
    for name, means in scores.items():
        print(f"{name:<14} {means['pesq_wb']:8.3f} {means['stoi']:6.3f} {means['mel_distance']:9.3f}")
    gain = scores["vocoder"]["pesq_wb"] - scores["griffin-lim"]["pesq_wb"]
    print(f"PESQ difference (vocoder - Griffin-Lim): {gain:+.3f}")


if __name__ == "__main__":
    main()
