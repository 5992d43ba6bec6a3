"""Train the codec, the vocoder or the language model with Lightning.

    python -m recipes.train codec   [--config my.yaml] [--set optim.lr=1e-4 ...] [--resume]
    python -m recipes.train vocoder [--max-time 00:02:00:00] [--output runs/vocoder]
    python -m recipes.train lm      [--devices 2 --strategy ddp --num-nodes 1]
    python -m recipes.train codec --smoke       # a tiny model for a few steps (used by the tests)

Every run writes into ``--output``: ``checkpoints/last.ckpt`` (optimizer and step included; written
every ``trainer.checkpoint_every_n_steps`` steps and at the end), CSV and TensorBoard logs, and
``best/`` — the best weights so far by the validation metric, saved with ``save_pretrained``
(loadable with ``Codec/Vocoder/AudioLanguageModel.from_pretrained``). ``--resume`` continues from
``checkpoints/last.ckpt``, mid-epoch where it stopped: the checkpoint holds the training sampler's state
after the last batch trained, so the rest of the epoch is neither repeated nor skipped
(:mod:`recipes.sampling`). The same command scales out with ``--devices N --strategy ddp`` and
``--num-nodes M`` (Lightning's DDP; on a cluster launch one process per node with the usual
``MASTER_ADDR``/``NODE_RANK`` variables).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import signal
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, Timer, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.strategies import DDPStrategy

from vocoder.checkpoint import differing_fields

from .config import RecipeConfigError, load_recipe_config
from .precision import resolve_precision

# Lightning suggests saving pre-step weights for manual optimisation; our checkpoints are post-step by design.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
# Parts named by optim.frozen are in eval mode on purpose.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")

TASKS = {
    "codec": "recipes.codec_module:CodecModule",
    "vocoder": "recipes.vocoder_module:VocoderModule",
    "lm": "recipes.lm_module:LanguageModelModule",
}


def task_class(task: str):
    """The LightningModule class of a task (imported lazily: each pulls in its own models)."""
    if task not in TASKS:
        raise RecipeConfigError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    module_name, class_name = TASKS[task].split(":")
    return getattr(importlib.import_module(module_name), class_name)


class ExportBest(Callback):
    """Exports the module's weights with ``save_pretrained`` whenever the monitored metric improves."""

    def __init__(self, directory: Path, monitor: str, mode: str = "min", half: bool = False) -> None:
        self.directory, self.monitor, self.mode, self.half = directory, monitor, mode, half
        self.best: Optional[float] = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best = value
            if trainer.is_global_zero:
                pl_module.export(self.directory, half=self.half)
                (self.directory / "metrics.json").write_text(
                    json.dumps({"step": trainer.global_step, self.monitor: value}, indent=2) + "\n"
                )

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.best = state_dict.get("best")


class ComputeTime(Callback):
    """Logs ``cpu_hours``, the CPU time the training processes spent so far (every process of a
    distributed run, summed at each validation), and, on an accelerator, also ``gpu_hours``, wall-clock
    hours times the number of devices (there the CPU time is not the compute that mattered). Both are
    summed over every run that resumed this one (kept in the checkpoint), so learning curves can be
    drawn against compute."""

    def __init__(self) -> None:
        self.previous_cpu = self.previous_gpu = 0.0
        self.devices = 0  # accelerator devices of this run; 0 on the CPU
        self.cpu_start, self.wall_start = time.process_time(), time.monotonic()
        # At the last validation of a distributed run: (this process's CPU seconds, every process's).
        self.synced: Optional[Tuple[float, float]] = None

    @property
    def state_key(self) -> str:
        return "CpuTime"  # its name before it also counted GPU time: older checkpoints keep their hours

    def cpu_hours(self) -> float:
        local = time.process_time() - self.cpu_start
        if self.synced is None:
            return self.previous_cpu + local / 3600.0
        local_then, every_then = self.synced
        return self.previous_cpu + (every_then + local - local_then) / 3600.0

    def gpu_hours(self) -> float:
        return self.previous_gpu + self.devices * (time.monotonic() - self.wall_start) / 3600.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.strategy.root_device.type != "cpu":
            self.devices = trainer.world_size

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            if trainer.world_size > 1:  # every rank validates, so every rank takes part in the sum
                local = time.process_time() - self.cpu_start
                every = trainer.strategy.reduce(torch.tensor(local, dtype=torch.float64), reduce_op="sum")
                self.synced = (local, float(every))
            hours = {"cpu_hours": self.cpu_hours()}
            if self.devices or self.previous_gpu:
                hours["gpu_hours"] = self.gpu_hours()
            for logger in trainer.loggers:
                logger.log_metrics(hours, step=trainer.global_step)

    def state_dict(self) -> Dict[str, Any]:
        return {"cpu_hours": self.cpu_hours(), "gpu_hours": self.gpu_hours()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.previous_cpu = float(state_dict.get("cpu_hours", 0.0))
        self.previous_gpu = float(state_dict.get("gpu_hours", 0.0))
        self.cpu_start, self.wall_start = time.process_time(), time.monotonic()
        self.synced = None


def _rows_until(path: Path, step: Optional[int]) -> Optional[Tuple[List[str], List[Dict[str, str]]]]:
    """The columns of CSV log ``path`` and its rows up to ``step``; ``None`` if there is no step or no log."""
    if step is None or not path.is_file():
        return None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), [row for row in reader if float(row.get("step") or 0) <= step]


class ResumableCSVLogger(CSVLogger):
    """A :class:`CSVLogger` that appends to the log of the run it resumes (``keep_until_step``:
    the resumed checkpoint's step; ``None`` for a fresh run, which starts a new log).

    Lightning's writer deletes an existing ``metrics.csv`` when it starts; the rows of the run this
    one continues (up to the checkpoint's step: later rows are logged again) and their columns are
    read first and written back once it has started."""

    def __init__(self, *args: Any, keep_until_step: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept = _rows_until(Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE, keep_until_step)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._kept is None:
            return super().experiment
        with warnings.catch_warnings():
            # Its warning that the earlier log will be deleted: it is kept.
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment
        if isinstance(writer, ExperimentWriter):  # other ranks get a stand-in that writes nothing
            (columns, rows), self._kept = self._kept, None
            with open(writer.metrics_file_path, "w", newline="") as handle:
                table = csv.DictWriter(handle, fieldnames=columns)
                table.writeheader()
                table.writerows(rows)
            writer.metrics_keys = sorted(columns)  # the writer appends rows in these columns
        return writer


class RunTimer(Timer):
    """``--max-time`` as the budget of this run. Lightning's Timer restores the time elapsed before
    the checkpoint, so a resumed run with the same budget would stop at once."""

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        pass


class SaveLastOnEnd(Callback):
    """Writes ``last.ckpt`` when training stops: at its end (max steps, max time) and on Ctrl-C
    (SIGINT), so stopping a run by hand loses nothing since the last periodic checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            trainer.save_checkpoint(self.path, weights_only=False)


def replica_fingerprint(module: torch.nn.Module) -> Tuple[List[str], torch.Tensor]:
    """The names of ``module``'s parameters and buffers (codebooks, EMA statistics, ...) and one
    checksum of each (float64), to compare the replicas of a multi-process run."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, _ in tensors], torch.stack([t.detach().double().sum() for _, t in tensors])


def diverged_tensors(names: List[str], gathered: torch.Tensor) -> List[str]:
    """The names whose checksums differ between ranks in ``gathered [world, tensors]`` (NaN equals NaN)."""
    same = (gathered == gathered[0]) | (gathered.isnan() & gathered[0].isnan())
    return [name for name, ok in zip(names, same.all(0).tolist()) if not ok]


class CheckReplicasInSync(Callback):
    """At the end of a multi-process run, checks that every rank holds exactly the same parameters
    and buffers and writes ``replicas.json`` (a desynchronised replica would silently waste the run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size < 2:
            return
        names, fingerprint = replica_fingerprint(pl_module)
        gathered = pl_module.all_gather(fingerprint.to(pl_module.device)).cpu()  # [world, tensors]
        diverged = diverged_tensors(names, gathered)
        if trainer.is_global_zero:
            self.path.write_text(json.dumps({"world_size": trainer.world_size, "in_sync": not diverged,
                                             "diverged": diverged, "checksums": gathered.nansum(-1).tolist()},
                                            indent=2) + "\n")
        if diverged:
            shown = ", ".join(diverged[:5]) + (f" and {len(diverged) - 5} more" if len(diverged) > 5 else "")
            raise RuntimeError(f"model replicas diverged across ranks: {shown}")


def build_trainer(config: Dict[str, Any], output: Path, module: L.LightningModule,
                  resumed_step: Optional[int] = None) -> L.Trainer:
    """A Trainer with checkpointing, best-weight export, CSV + TensorBoard logging and a progress bar."""
    # Lightning's own arguments; None means its default, except for check_val_every_n_epoch, whose
    # None switches validation to step intervals.
    t = {k: v for k, v in config["trainer"].items() if v is not None or k == "check_val_every_n_epoch"}
    every = t.pop("checkpoint_every_n_steps")
    t["precision"] = resolve_precision(t["precision"], t.get("accelerator", "auto"))
    max_time = t.pop("max_time", None)
    export_half = config["export"]["half"]
    checkpoints = output / "checkpoints"
    callbacks: List[Callback] = [
        # No version counter: in a resumed run whose folder was moved or copied, Lightning would
        # otherwise write last-v1.ckpt and leave a stale last.ckpt for the next --resume.
        ModelCheckpoint(dirpath=checkpoints, filename="step{step}", save_last=True, save_top_k=1,
                        every_n_train_steps=every, train_time_interval=None, auto_insert_metric_name=False,
                        enable_version_counter=False),
        ExportBest(output / "best", module.monitor, module.monitor_mode, half=export_half),
        SaveLastOnEnd(checkpoints / "last.ckpt"),
        CheckReplicasInSync(output / "replicas.json"),
        ComputeTime(),
        TQDMProgressBar(refresh_rate=t.pop("progress_refresh_rate")),
        *([RunTimer(duration=max_time, interval="step")] if max_time else []),
        LearningRateMonitor(logging_interval="step"),
    ]
    if t.get("strategy") == "ddp" and getattr(module, "has_unused_parameters", False):
        # GAN steps leave the discriminators out of some backward passes; DDP must expect that.
        t["strategy"] = DDPStrategy(find_unused_parameters=True)
    loggers = [ResumableCSVLogger(output, name="csv", version="", keep_until_step=resumed_step),
               TensorBoardLogger(output, name="tensorboard", version="")]
    # The recipes' training batches come from Lhotse samplers that shard by rank themselves and resume
    # mid-epoch (recipes.sampling): Lightning must not wrap them in its DistributedSampler.
    return L.Trainer(default_root_dir=output, callbacks=callbacks, logger=loggers, use_distributed_sampler=False, **t)


def checked_resume_step(path: Path, config: Dict[str, Any], training_fields: Tuple[str, ...] = (),
                        module: Optional[torch.nn.Module] = None) -> int:
    """The step of checkpoint ``path``, after checking that it is readable and that it was trained
    with the same model config as ``config`` (``training_fields``, settings that only steer training
    such as a codec's dead-code threshold, may change) and, given ``module``, that its weights have the
    module's names and shapes; raises :class:`RecipeConfigError` otherwise."""
    others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        step = int(state["global_step"])
        saved = state.get("hyper_parameters", {})
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        hint = f"; other checkpoints there: {', '.join(others)}" if others else ""
        raise RecipeConfigError(f"cannot resume: {path} is damaged or not a checkpoint "
                                f"({type(err).__name__}){hint}") from None
    differing = differing_fields(saved["model"], config["model"], training_fields) if "model" in saved else []
    if differing:
        raise RecipeConfigError(f"cannot resume: {path} was trained with another model config (differs in "
                                f"{', '.join(differing)}); keep the model settings or use a new --output")
    mismatched = mismatched_weights(state.get("state_dict", {}), module.state_dict()) if module is not None else []
    if mismatched:
        shown = ", ".join(mismatched[:3]) + (f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else "")
        raise RecipeConfigError(f"cannot resume: {path} holds another model's weights ({shown}); the run was "
                                f"probably started under other recipe defaults: pass its model settings "
                                f"explicitly (see its config.yaml) or use a new --output")
    return step


def mismatched_weights(saved: Dict[str, Any], current: Dict[str, torch.Tensor]) -> List[str]:
    """Names of weights missing on either side or shaped differently."""
    names = sorted(set(saved) ^ set(current))
    names += sorted(k for k in set(saved) & set(current)
                    if hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(current[k].shape))
    return names


def parse_max_time(value: Optional[str]) -> Optional[str]:
    """Accept Lightning's ``DD:HH:MM:SS`` or a number of minutes."""
    if value is None:
        return None
    if value.replace(".", "", 1).isdigit():
        minutes = float(value)
        total = timedelta(minutes=minutes)
        days, rest = divmod(int(total.total_seconds()), 86400)
        hours, rest = divmod(rest, 3600)
        return f"{days:02d}:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    if len(value.split(":")) != 4:
        raise RecipeConfigError(f"--max-time must be DD:HH:MM:SS or minutes, got {value!r}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--config", type=Path, help="YAML file merged over the task's defaults")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides such as optim.lr=1e-4 data.batch_size=16")
    parser.add_argument("--output", type=Path, help="run directory (default: runs/<task>)")
    parser.add_argument("--resume", action="store_true", help="continue from <output>/checkpoints/last.ckpt")
    parser.add_argument("--max-time", help="time budget: DD:HH:MM:SS or minutes")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--devices", help="number of devices or 'auto'")
    parser.add_argument("--accelerator", help="cpu, gpu, auto...")
    parser.add_argument("--strategy", help="auto, ddp, ddp_spawn...")
    parser.add_argument("--num-nodes", type=int)
    parser.add_argument("--smoke", action="store_true", help="tiny model, few steps, a few seconds of audio")
    args = parser.parse_args(argv)

    try:
        # Command-line trainer options are overrides too, so they are checked like the rest.
        options = [f"trainer.{key}={value}" for key, value in (
            ("max_time", parse_max_time(args.max_time)), ("max_steps", args.max_steps), ("devices", args.devices),
            ("accelerator", args.accelerator), ("strategy", args.strategy), ("num_nodes", args.num_nodes))
            if value is not None]
        config = load_recipe_config(args.task, args.config, [*args.overrides, *options], smoke=args.smoke)
        output = args.output or Path(config["output"] or f"runs/{args.task}")
        output.mkdir(parents=True, exist_ok=True)
        L.seed_everything(config["seed"], workers=True, verbose=False)
        module = task_class(args.task)(config)
        datamodule = module.datamodule()
        if hasattr(datamodule, "check_sources"):  # evaluation-only or reserved sources: one line, before any work
            datamodule.check_sources()
        last = output / "checkpoints" / "last.ckpt"
        resumed_step = (checked_resume_step(last, config, module.training_fields, module)
                        if args.resume and last.is_file() else None)
        if args.resume and resumed_step is None:
            print(f"note: nothing to resume in {last.parent}; starting from scratch", file=sys.stderr)
        if resumed_step is None and config["init"]:
            module.warm_start(Path(config["init"]))
            print(f"note: warm start from {config['init']}", file=sys.stderr)
    except (RecipeConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    (output / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    trainer = build_trainer(config, output, module, resumed_step)
    ckpt = str(last) if resumed_step is not None else None
    # Ctrl-C / `kill -INT` is the documented way to stop a run and keep its state, whatever the parent
    # left behind: a script's background job (`nohup ... &`) inherits SIGINT ignored, and a parent
    # process can hand down SIGINT blocked (the test suite did, so the interrupt stayed pending).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
