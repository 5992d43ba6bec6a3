"""What the codec and vocoder recipes share: audio data, GAN optimisation, validation, export.

Both tasks train a generator (waveform in, waveform out) against the toolkit's one
:class:`~vocoder.discriminators.Discriminators` set with manual optimisation. On a CPU the early
steps are spent on the cheap reconstruction losses: the discriminators join at
``optim.adversarial_start_step``. Validation reconstructs held-out clips and reports mel distance
and, for speech corpora (``data.speech: true``), wide-band PESQ and STOI.
"""

from __future__ import annotations

import json
import warnings
import math
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning as L
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate
from torchmetrics import MeanMetric

from vocoder.checkpoint import config_from_dict, config_to_dict
from vocoder.discriminators import DiscriminatorConfig, Discriminators
from vocoder.losses import LossWeights, adversarial_discriminator_loss
from vocoder.metrics import (SPEECH_METRIC_PACKAGES, MetricUnavailable, mel_distance, optional_metric,
                             pesq_wideband, require_package, si_sdr, stoi)

from .augment import AugmentConfig, AugmentedDataset, draw_speed
from .config import RecipeConfigError
from .data import AudioSegmentDataset, ManifestError, open_clips, refuse_untrainable, selected
from .sampling import ResumableBatches, ResumableDataModule, ResumableLoader, bucketing_sampler

DISCRIMINATOR_WEIGHTS = "discriminators.safetensors"
DISCRIMINATOR_CONFIG = "discriminators.json"


class AudioDataModule(ResumableDataModule):
    """Fixed-length crops of a corpus manifest: random crops for training, fixed ones for validation.

    Training batches are drawn by Lhotse's sampler (:mod:`recipes.sampling`: one bucket, since every
    crop has the same length; a seeded shuffle per epoch; sharded by rank) and resume mid-epoch exactly.

    ``exclude`` drops recordings from training by recording-id prefix (a source name, or
    ``source/folder``); validation reads ``valid_manifest`` (default: the training manifest), split
    ``valid_split`` (``null``: every split), keeping the recordings under the ``valid_include``
    prefixes (default: all). Together they hold a whole source out as unseen validation data.
    """

    def __init__(self, manifest: str, sample_rate: int, segment_seconds: float = 1.0,
                 valid_segment_seconds: float = 3.0, batch_size: int = 8, num_workers: int = 0,
                 valid_batch_size: int = 4, exclude: Sequence[str] = (), valid_manifest: Optional[str] = None,
                 valid_split: Optional[str] = "valid", valid_include: Optional[Sequence[str]] = None,
                 augment: Optional[Dict[str, Any]] = None, seed: int = 0, **_: Any) -> None:
        super().__init__()
        self.manifest, self.sample_rate = manifest, sample_rate
        self.segment_seconds, self.valid_segment_seconds = segment_seconds, valid_segment_seconds
        self.batch_size, self.valid_batch_size, self.num_workers = batch_size, valid_batch_size, num_workers
        self.exclude, self.valid_manifest = tuple(exclude), valid_manifest or manifest
        self.valid_split, self.valid_include = valid_split, valid_include
        self.augment = config_from_dict(AugmentConfig, augment or {}, "data.augment")
        self.seed = seed

    def check_sources(self) -> None:
        """Refuse, before training starts, a manifest whose train split (less ``exclude``) holds a source
        that must never be trained on (:func:`recipes.data.refuse_untrainable`)."""
        clips = open_clips(self.manifest, check_files=False)
        refuse_untrainable([e for e in clips.entries("train") if selected(e, None, self.exclude)], self.manifest)

    def setup(self, stage: Optional[str] = None) -> None:
        speed = partial(draw_speed, self.augment) if self.augment.enabled and self.augment.speed_p > 0 else None
        self.clips = AudioSegmentDataset(self.manifest, "train", self.segment_seconds, self.sample_rate,
                                         exclude=self.exclude, speed_factor=speed)
        self.train_set: Dataset = self.clips
        if self.augment.enabled:
            self.train_set = AugmentedDataset(self.train_set, self.augment, self.sample_rate,
                                              self._noise_set(), seed=self.seed)
        self.valid_set = AudioSegmentDataset(self.valid_manifest, self.valid_split, self.valid_segment_seconds,
                                             self.sample_rate, include=self.valid_include)

    def _noise_set(self) -> Optional[AudioSegmentDataset]:
        """Background clips for noise augmentation: the training split under ``noise_include`` (a
        corpus without such recordings trains without noise mixing, and says so)."""
        if self.augment.noise_p <= 0 or not self.augment.noise_include:
            return None
        try:
            return AudioSegmentDataset(self.manifest, "train", self.segment_seconds, self.sample_rate,
                                       include=self.augment.noise_include, exclude=self.exclude)
        except ManifestError:
            warnings.warn(f"data.augment: no training recording of {self.manifest} lies under "
                          f"noise_include {self.augment.noise_include}: training without background noise")
            return None

    def train_dataloader(self) -> ResumableLoader:
        world_size, rank = self.process_group()
        sampler = bucketing_sampler([e.duration for e in self.clips.entries], self.batch_size, drop_last=True,
                                    seed=self.seed, world_size=world_size, rank=rank)
        layout = {"items": len(self.clips), "batch_size": self.batch_size, "world_size": world_size,
                  "seed": self.seed}
        self._train_loader = ResumableLoader(self.train_set, ResumableBatches(sampler, layout), default_collate,
                                             self.num_workers)
        return self._train_loader

    def val_dataloader(self) -> DataLoader:
        world_size, rank = self.process_group()
        # The Trainer leaves loaders as they are (the training sampler shards by rank itself): split
        # the validation clips between the processes here, as Lightning's own sampler would.
        sampler = DistributedSampler(self.valid_set, world_size, rank, shuffle=False) if world_size > 1 else None
        return DataLoader(self.valid_set, batch_size=self.valid_batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)


class ValidationMeans(nn.Module):
    """Means of a fixed set of named validation metrics over every process's clips.

    The set is fixed at construction, so under DDP every rank logs the same keys and so issues the
    same collectives, whichever metrics failed on its own clips; a value a metric could not produce
    (``None``, NaN, inf) does not count, and a metric with no value anywhere logs NaN.
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.means = nn.ModuleDict({name: MeanMetric(nan_strategy="ignore") for name in names})

    def add(self, name: str, value: Optional[float]) -> None:
        """Count one clip's ``value`` of metric ``name`` (one of the names given at construction)."""
        finite = value is not None and math.isfinite(value)
        self.means[name].update(float(value) if finite else math.nan)

    def loggable(self, prefix: str = "val/") -> Dict[str, MeanMetric]:
        """The metrics by logged name, for ``log_dict``: Lightning computes them (reducing over
        processes), logs and resets them at the end of the epoch."""
        return {prefix + name: metric for name, metric in self.means.items()}


class AudioGanModule(L.LightningModule):
    """Base of the codec and vocoder recipes. Subclasses pass their generator and implement
    :meth:`generator_loss` and :meth:`reconstruct`."""

    monitor = "val/mel_distance"
    monitor_mode = "min"
    has_unused_parameters = True  # the discriminators sit out the reconstruction-only steps

    def __init__(self, config: Dict[str, Any], generator: nn.Module, sample_rate: int) -> None:
        super().__init__()
        self.save_hyperparameters(config)
        self.config = config
        self.automatic_optimization = False
        self.optim = config["optim"]  # checked and completed by recipes.config.GanOptimConfig
        self.generator = generator
        self.sample_rate = sample_rate
        self.frozen_parts()  # a misspelt optim.frozen fails here, before any training
        self.weights = config_from_dict(LossWeights, config["loss"], "loss")
        self.discriminator_config = config_from_dict(DiscriminatorConfig, config["discriminators"],
                                                     "discriminators")
        self.discriminators = Discriminators(self.discriminator_config)
        self.validation_means = ValidationMeans(self.validation_metric_names())
        if config["data"]["speech"]:  # fail now, not at the first validation hours into a run
            try:
                for metric in SPEECH_METRIC_PACKAGES:
                    require_package(metric)
            except MetricUnavailable as err:
                raise RecipeConfigError(f"data.speech: true reports PESQ and STOI, but {err}") from None

    @property
    def training_fields(self) -> Tuple[str, ...]:
        """Config fields a resumed run may change (see ``Pretrained.training_fields``)."""
        return type(self.generator).training_fields

    # -- subclass hooks ---------------------------------------------------------------------------

    def generator_loss(self, audio: torch.Tensor, adversarial: bool) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """Returns (generated audio, total generator loss, terms to log)."""
        raise NotImplementedError

    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        """Inference-mode reconstruction of ``audio [B, 1, T]`` for validation."""
        raise NotImplementedError

    # -- Lightning --------------------------------------------------------------------------------

    def validation_metric_names(self) -> List[str]:
        """What validation reports: mel distance and SI-SDR, and for speech PESQ and STOI too."""
        return ["mel_distance", "si_sdr", *(["pesq", "stoi"] if self.config["data"]["speech"] else [])]

    def datamodule(self) -> AudioDataModule:
        return AudioDataModule(sample_rate=self.sample_rate, seed=self.config["seed"], **self.config["data"])

    def frozen_parts(self) -> List[nn.Module]:
        """The generator's children named by ``optim.frozen``: never updated, kept in eval mode."""
        children = dict(self.generator.named_children())
        unknown = [name for name in self.optim["frozen"] if name not in children]
        if unknown:
            raise RecipeConfigError(f"optim.frozen: the {type(self.generator).__name__} has no part(s) "
                                    f"{unknown}; it has {sorted(children)}")
        return [children[name] for name in self.optim["frozen"]]

    def train(self, mode: bool = True) -> "AudioGanModule":
        super().train(mode)
        if mode:
            for part in self.frozen_parts():  # eval mode: no dropout, no EMA codebook updates
                part.eval()
        return self

    def configure_optimizers(self):
        lr, betas, decay = self.optim["lr"], tuple(self.optim["betas"]), self.optim["lr_decay"]
        frozen = set()
        for part in self.frozen_parts():
            part.requires_grad_(False)
            frozen.update(map(id, part.parameters()))
        # Lightning restores each submodule's mode as it finds it at this point (around every
        # validation), and nothing has called train() yet: put the frozen parts in eval mode now.
        self.train(self.training)
        trainable = [p for p in self.generator.parameters() if id(p) not in frozen]
        gen = torch.optim.AdamW(trainable, lr=lr, betas=betas)
        disc = torch.optim.AdamW(self.discriminators.parameters(), lr=lr, betas=betas)
        schedulers = [torch.optim.lr_scheduler.ExponentialLR(opt, decay) for opt in (gen, disc)]
        return [gen, disc], [{"scheduler": s, "interval": "step"} for s in schedulers]

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """A resumed run decays its learning rate by this run's ``optim.lr_decay`` from the rate the
        checkpoint had reached: the schedulers' saved state would otherwise keep the old factor silently
        (a cool-down is a resume with a smaller decay)."""
        for state in checkpoint.get("lr_schedulers", []):
            if "gamma" in state:
                state["gamma"] = self.optim["lr_decay"]

    def adversarial_active(self) -> bool:
        return self.global_step >= self.optim["adversarial_start_step"]

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        audio = batch["audio"]
        gen_opt, disc_opt = self.optimizers()
        gen_sched, disc_sched = self.lr_schedulers()
        adversarial = self.adversarial_active()
        clip = self.optim["grad_clip"]

        generated, loss, terms = self.generator_loss(audio, adversarial)
        gen_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(gen_opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        gen_opt.step()
        gen_sched.step()
        logs = {f"train/{name}": value for name, value in terms.items()}
        logs["train/generator"] = loss.detach()

        if adversarial:
            disc_loss = adversarial_discriminator_loss(self.discriminators, generated, audio)
            disc_opt.zero_grad(set_to_none=True)
            self.manual_backward(disc_loss)
            self.clip_gradients(disc_opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            # Lightning counts every LightningOptimizer.step of manual optimisation as a global step;
            # the strategy's step (the same update, precision plugin included) does not count, so
            # max_steps, checkpoint intervals and adversarial_start_step all count batches.
            self.trainer.strategy.optimizer_step(disc_opt.optimizer, closure=_no_closure)
            disc_sched.step()
            logs["train/discriminator"] = disc_loss.detach()
        self.log_dict(logs, prog_bar=False, sync_dist=False)
        self.log("loss", loss.detach(), prog_bar=True, logger=False)

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        audio = batch["audio"]
        estimate = self.reconstruct(audio)[..., : audio.shape[-1]].float()
        metrics = self.validation_means
        for i, valid in enumerate(batch["num_samples"].tolist()):
            ref, est = audio[i, :, :valid], estimate[i, :, :valid]
            metrics.add("mel_distance", mel_distance(ref, est, self.sample_rate))
            metrics.add("si_sdr", si_sdr(ref, est))
            if self.config["data"]["speech"]:
                metrics.add("pesq", optional_metric(pesq_wideband, ref, est, self.sample_rate))
                metrics.add("stoi", optional_metric(stoi, ref, est, self.sample_rate))

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.validation_means.loggable(), prog_bar=True)

    def warm_start(self, directory: Path) -> None:
        """Start from the weights of a saved generator (``init: DIR``); its config must match."""
        self.generator.load_weights_from(directory)

    # -- export -----------------------------------------------------------------------------------

    def export(self, directory: Path, half: bool = False) -> None:
        """Save the generator with ``save_pretrained`` and the discriminators beside it (for fine-tuning)."""
        directory = Path(directory)
        self.generator.save_pretrained(directory, half=half)
        state = {k: v.detach().cpu().contiguous() for k, v in self.discriminators.state_dict().items()}
        save_file(state, str(directory / DISCRIMINATOR_WEIGHTS))
        (directory / DISCRIMINATOR_CONFIG).write_text(
            json.dumps(config_to_dict(self.discriminator_config), indent=2) + "\n")


def _no_closure() -> None:
    """The closure of an optimizer step whose gradients were computed before it."""

