"""Short real-speech quality check: train the vocoder briefly on CPU, compare it with Griffin-Lim.

Trains on a few minutes of recorded speech with the reconstruction losses of
:class:`~vocoder.training.VocoderLoss` (no discriminators) for a fixed budget of *process CPU time*
(so runs sharing a busy machine stay comparable), then copy-synthesises held-out recordings and
compares against Griffin-Lim from the same mel (filterbank pseudo-inverse, then fast Griffin-Lim at
several iteration counts) on wide-band PESQ, STOI, mel distance and synthesis real-time factor.
``--report-every`` scores the vocoder during training too, giving a learning curve. The vocoder
is scored as the network alone (``refine=0``): this script measures what training buys; the
shipped decode with phase refinement is measured by ``python -m recipes.evaluate``.

Speech: the spoken descriptions of Debian's ``tuxpaint-stamps-default`` (GPL-2)::

    apt-get download tuxpaint-stamps-default && dpkg-deb -x tuxpaint-stamps-default_*.deb DIR
    python benchmarks/vocoder_quality.py DIR --max-cpu-seconds 3600 --report-every 900

Training and held-out files are different recordings of different stamps (split by stamp name).
"""

from __future__ import annotations

import argparse
import random
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch
from tqdm import tqdm

from vocoder import Vocoder, VocoderConfig, load_audio, prepare_waveform
from vocoder.metrics import MetricAverager, mel_distance, pesq_wideband, stoi
from vocoder.losses import LossWeights
from vocoder.model import BACKBONES
from vocoder.spectral import InverseSTFT, stft
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


def train(vocoder: Vocoder, clips: Sequence[torch.Tensor], args: argparse.Namespace,
          report: Callable[[int, float], None]) -> int:
    """Reconstruction-only training for ``args.max_cpu_seconds`` of process CPU time; returns steps.

    ``report(step, cpu_seconds)`` is called every ``args.report_every`` CPU seconds and at the end;
    the time it takes is not charged to the training budget.
    """
    loss_fn = VocoderLoss(vocoder.config, LossWeights(phase=args.phase_weight, phase_weighting=args.phase_weighting))
    trainable = [p for p in vocoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.8, 0.99))
    rng = random.Random(args.seed)
    length = int(args.segment_seconds * vocoder.sample_rate) // vocoder.hop_length * vocoder.hop_length
    used, step, next_report, reported = 0.0, 0, args.report_every, -1
    progress = tqdm(total=int(args.max_cpu_seconds), desc="training (CPU s)", unit="s")
    vocoder.train()
    while used < args.max_cpu_seconds and step < args.max_steps:
        start = time.process_time()
        target = random_batch(clips, args.batch_size, length, rng)
        with torch.no_grad():
            mel = vocoder.frontend(target)
        loss = loss_fn(vocoder(mel), target)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1000.0)
        optimizer.step()
        step += 1
        used += time.process_time() - start
        progress.update(int(used) - progress.n)
        if step % 50 == 0:
            progress.set_postfix(step=step, loss=f"{loss.total.item():.2f}", mel=f"{loss.terms['mel'].item():.3f}")
        if args.report_every and used >= next_report:
            vocoder.eval()
            report(step, used)
            vocoder.train()
            next_report += args.report_every
            reported = step
    progress.close()
    vocoder.eval()
    if reported != step:  # the last periodic report may already cover the final step
        report(step, used)
    return step


def griffin_lim(vocoder: Vocoder, mel: torch.Tensor, iterations: int) -> torch.Tensor:
    """Griffin-Lim from the same log-mel: the filterbank's pseudo-inverse, then fast Griffin-Lim
    (momentum 0.99, torchaudio's and librosa's default) from random phase, amplitude fixed."""
    magnitude = torch.exp(vocoder.frontend.pseudo_inverse(mel))
    return vocoder.refiner(magnitude, None, iterations, generator=torch.Generator().manual_seed(0))


def true_phase_ceiling(vocoder: Vocoder, istft: InverseSTFT, mel: torch.Tensor,
                       reference: torch.Tensor) -> torch.Tensor:
    """The pseudo-inverse amplitude with the reference's own phase: what a perfect phase predictor
    would reach with the prior alone (a ceiling, not a method). ``istft`` is at the mel's STFT."""
    c = vocoder.config.mel
    amplitude = torch.exp(vocoder.frontend.pseudo_inverse(mel))
    phase = torch.angle(stft(reference, c.n_fft, c.hop_length, c.win_length))[..., : mel.shape[-1]]
    return istft(amplitude * torch.cos(phase), amplitude * torch.sin(phase))[:, None]


def score(clips: Sequence[torch.Tensor], mels: Sequence[torch.Tensor], synthesise: Callable, rate: int,
          hop: int) -> Dict[str, float]:
    """Mean PESQ / STOI / mel distance of ``synthesise(mel, reference)`` against each clip, plus the
    real-time factor of the synthesis alone (process CPU time / audio duration)."""
    averager, cpu, audio = MetricAverager(), 0.0, 0.0
    for clip, mel in zip(clips, tqdm(mels, desc="evaluating", leave=False)):
        reference = clip[None, None, : mel.shape[-1] * hop]
        start = time.process_time()
        with torch.no_grad():
            estimate = synthesise(mel, reference)
        cpu += time.process_time() - start
        audio += reference.shape[-1] / rate
        averager.add("pesq_wb", pesq_wideband(reference, estimate, rate))
        averager.add("stoi", stoi(reference, estimate, rate))
        averager.add("mel_distance", mel_distance(reference, estimate, rate))
    return {**averager.means(), "rtf": cpu / audio}


def print_row(name: str, scores: Dict[str, float]) -> None:
    print(f"{name:<28} {scores['pesq_wb']:8.3f} {scores['stoi']:6.3f} {scores['mel_distance']:9.3f} "
          f"{scores['rtf']:8.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="unpacked tuxpaint-stamps-default (or any folder of *_desc_LANG.ogg)")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="convnext")
    parser.add_argument("--train-minutes", type=float, default=6.0)
    parser.add_argument("--eval-files", type=int, default=24)
    parser.add_argument("--held-out-fraction", type=float, default=0.1)
    parser.add_argument("--max-cpu-seconds", type=float, default=900.0, help="training budget in process CPU time")
    parser.add_argument("--report-every", type=float, default=0.0,
                        help="also score the vocoder every this many CPU seconds of training (a learning curve)")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment-seconds", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--griffin-lim-iterations", type=int, nargs="*", default=[4, 32, 100],
                        help="Griffin-Lim iteration counts to compare with (32 is torchaudio's default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amplitude-prior", action=argparse.BooleanOptionalAction, default=True,
                        help="correct the mel pseudo-inverse (FreeV) instead of predicting amplitude from scratch")
    parser.add_argument("--freeze-amplitude", action="store_true",
                        help="with the amplitude prior: train only the phase (the amplitude stays the prior)")
    parser.add_argument("--phase-weight", type=float, default=LossWeights.phase)
    parser.add_argument("--phase-weighting", choices=["none", "amplitude"], default=LossWeights.phase_weighting)
    parser.add_argument("--save", type=Path, help="save the trained vocoder here")
    parser.add_argument("--model", type=Path, help="evaluate this saved vocoder instead of training one")
    parser.add_argument("--init", type=Path, help="continue training this saved vocoder (fresh optimizer)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.model or args.init:
        vocoder = Vocoder.from_pretrained(args.model or args.init, device="cpu")
    else:
        vocoder = Vocoder(VocoderConfig(backbone=replace(BACKBONES[args.backbone]),
                                        amplitude_prior=args.amplitude_prior))
    if args.freeze_amplitude:
        if not vocoder.config.amplitude_prior:
            parser.error("--freeze-amplitude needs the amplitude prior (the amplitude would stay random)")
        vocoder.head.amplitude.requires_grad_(False)
    files = speech_files(args.data, LANGUAGES)
    if not files:
        raise SystemExit(f"no *_desc_<lang>.ogg speech files under {args.data}")
    train_files = [p for p in files if not is_held_out(p, args.held_out_fraction)]
    eval_files = [p for p in files if is_held_out(p, args.held_out_fraction)]
    random.Random(args.seed).shuffle(train_files)
    random.Random(args.seed + 1).shuffle(eval_files)
    rate, hop = vocoder.sample_rate, vocoder.hop_length
    train_clips = load_speech(train_files, rate, args.train_minutes * 60, "loading training speech")
    eval_clips = load_speech(eval_files[: args.eval_files], rate, float("inf"), "loading held-out speech")
    eval_mels = [vocoder.mel(clip, rate) for clip in eval_clips]

    params = sum(p.numel() for p in vocoder.parameters()) / 1e6
    train_minutes = sum(c.shape[-1] for c in train_clips) / rate / 60
    eval_minutes = sum(c.shape[-1] for c in eval_clips) / rate / 60
    source = f"model {args.model or args.init}" if args.model or args.init else (
        f"backbone {args.backbone}, amplitude prior {'on' if args.amplitude_prior else 'off'}")
    print(f"{source} ({params:.2f}M params), batch {args.batch_size} x {args.segment_seconds:g} s, "
          f"{args.threads} thread(s); train {len(train_clips)} files / {train_minutes:.1f} min, "
          f"held out {len(eval_clips)} files / {eval_minutes:.1f} min")
    print(f"{'method':<28} {'PESQ-wb':>8} {'STOI':>6} {'mel dist':>9} {'RTF':>8}")
    c = vocoder.config.mel
    mel_istft = InverseSTFT(c.n_fft, c.hop_length, c.win_length)
    print_row("prior + true phase (ceiling)", score(
        eval_clips, eval_mels, lambda m, ref: true_phase_ceiling(vocoder, mel_istft, m, ref), rate, hop))
    for iterations in args.griffin_lim_iterations:
        torch.manual_seed(args.seed)
        print_row(f"griffin-lim {iterations} it",
                  score(eval_clips, eval_mels, lambda m, ref: griffin_lim(vocoder, m, iterations), rate, hop))

    def report(step: int, cpu_seconds: float) -> None:
        print_row(f"vocoder {step} st / {cpu_seconds:.0f} CPU s",
                  score(eval_clips, eval_mels, lambda m, ref: vocoder.decode(m, refine=0), rate, hop))

    if args.model:
        report(0, 0.0)
    else:
        train(vocoder, train_clips, args, report)
    if args.save:
        vocoder.save_pretrained(args.save)


if __name__ == "__main__":
    main()
