"""Training the network on labelled dumps: epochs, checkpoints, resume, distributed data parallel, final report.

A run lives in one directory::

    run.json      inputs, timescales, --init / --freeze-backbone, versions
    config.yaml   the full configuration used (defaults filled in)
    split.json    {"train": [...], "validation": [...], "test": [...]} configuration ids
    metrics.csv   one row per epoch: lr, loss and Pearson per timescale (train, validation)
    last.ckpt     everything needed to continue (model, optimizer, scheduler, epoch, RNG states, history)
    best.ckpt     the model of the epoch with the best validation Pearson (mean over timescales)
    model.pt      best model exported for LAMMPS and ``glassmd predict`` (TorchScript)
    report.json, report.md   test Pearson per timescale, GNN next to the ridge baseline
    learning_curves.png, predicted_vs_true.png

Reproducibility: the order of configurations in epoch ``e`` and the dropout masks of each forward pass are
drawn from seeds derived from ``(training.seed, e, position in the epoch)``, not from a running generator,
so a run resumed from ``last.ckpt`` ends with the same weights as an uninterrupted one (bit for bit on
CPU), and K processes that share a batch draw the same masks as one process would.

Distributed (``torchrun --nproc_per_node K -m glassmd.train ...``): a step takes ``batch_size``
configurations; process r takes the r-th slice of ``batch_size / K`` of them, forwards them in chunks of
``forward_size`` (batch-norm statistics are per chunk, hence per process: no SyncBatchNorm), and
DistributedDataParallel averages the gradients. With equal ``forward_size`` this is the gradient one
process computes for the same batch, up to floating-point rounding. After each epoch the batch-norm
running statistics (used at evaluation) are re-measured without dropout on the same training
configurations by every process (``training.bn_recalibration``), so all processes evaluate one model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from glassmd.atomic import atomic_path, atomic_write_text
import glassmd
from glassmd.errors import GlassmdError, InputError, ModelFileError
from glassmd.model.checkpoint import TRAINING_CHECKPOINT_FORMAT
from glassmd.train.config import TrainConfig, load_config
from glassmd.train.dataset import (
    Configuration,
    LabelledSet,
    build_configurations,
    collate,
    find_dump_files,
    load_labelled_set,
    make_split,
    read_split,
    write_split,
)

__all__ = ["TrainOptions", "TrainResult", "train", "resume", "pearson_from_moments"]

CHECKPOINT_FORMAT = TRAINING_CHECKPOINT_FORMAT
CHECKPOINT_VERSION = 1


@dataclass
class TrainOptions:
    """What a training run needs besides the configuration.

    Attributes
    ----------
    inputs : dump files or directories of them
    run_dir : directory the run writes (must be absent or empty)
    config : validated configuration (``times`` set, or given in ``times``)
    times : timescales to learn; overrides ``config.times`` when given
    split_file : reuse this ``split.json`` instead of drawing a split
    device : "auto", "cpu", "cuda", "cuda:1", ...
    init : exported model (``model.pt``) or checkpoint whose weights start the run (transfer learning)
    freeze_backbone : train only the readout (needs ``init``)
    max_epochs_this_run : stop after this many epochs in this invocation (continue with :func:`resume`)
    progress : show a tqdm bar per epoch
    """

    inputs: Sequence[str | Path]
    run_dir: str | Path
    config: TrainConfig = field(default_factory=lambda: TrainConfig.from_dict({}))
    times: Sequence[float] | None = None
    split_file: str | Path | None = None
    device: str = "auto"
    init: str | Path | None = None
    freeze_backbone: bool = False
    max_epochs_this_run: int | None = None
    progress: bool = True


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    finished: bool
    report: dict | None


# --------------------------------------------------------------------------------------------------
# Small utilities


def _derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers; distinct tuples give independent streams."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def pearson_from_moments(m: np.ndarray) -> np.ndarray:
    """Pearson per output from summed moments ``[n, sp, st, spp, stt, spt, sse]`` (rows) x outputs."""
    n, sp, st, spp, stt, spt = m[0], m[1], m[2], m[3], m[4], m[5]
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = spt - sp * st / n
        vp = spp - sp * sp / n
        vt = stt - st * st / n
        r = cov / np.sqrt(vp * vt)
    return np.where((n >= 2) & (vp > 0) & (vt > 0), r, np.nan)


def _moments(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sums giving loss and Pearson over the rows of ``pred``/``target`` [m, T], float64 [7, T]."""
    p = pred.detach().to(torch.float64)
    t = target.detach().to(torch.float64)
    n = torch.full_like(p[0], float(p.shape[0])) if p.shape[0] else torch.zeros_like(p.sum(0))
    return torch.stack([n, p.sum(0), t.sum(0), (p * p).sum(0), (t * t).sum(0), (p * t).sum(0), ((p - t) ** 2).sum(0)])


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor


def _setup_distributed(device_request: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device_request.startswith("cuda") or (device_request == "auto" and torch.cuda.is_available())
    if device_request.startswith("cuda") and not torch.cuda.is_available():
        raise GlassmdError(f"--device {device_request}: CUDA is not available on this machine (use --device cpu)")
    if device_request not in ("auto", "cpu") and not device_request.startswith("cuda"):
        raise GlassmdError(f"--device must be auto, cpu, cuda or cuda:N, got {device_request!r}")
    if world <= 1:
        device = torch.device("cuda" if device_request == "auto" and want_cuda else
                              ("cpu" if device_request == "auto" else device_request))
        return _Dist(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if want_cuda:
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return _Dist(rank=rank, world_size=world, local_rank=local_rank), device


def _log(dist: _Dist, message: str) -> None:
    if dist.is_main:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stdout)


# --------------------------------------------------------------------------------------------------
# Model construction, initialisation and freezing


def _load_init(path: str | Path):
    """(ModelConfig, state dict) from an exported model file or a training/model checkpoint."""
    from glassmd.model import ModelConfig, load_model_file

    path = Path(path)
    _check_init_path(path)
    payload = None
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        payload = None
    if isinstance(payload, dict) and "model_config" in payload and "model_state" in payload:
        return ModelConfig.from_dict(payload["model_config"]), dict(payload["model_state"])
    module, meta = load_model_file(path)
    if "config" not in meta:
        raise ModelFileError(f"--init {str(path)!r}: model file metadata has no 'config'")
    state = {k[len("model."):]: v for k, v in module.state_dict().items() if k.startswith("model.")}
    return ModelConfig.from_dict(meta["config"]), state


def _check_init_path(path: Path) -> None:
    """--init names a file: a directory (a run) gets a suggestion of the file in it."""
    if path.is_dir():
        from glassmd.model.file_errors import first_file_in

        inside = first_file_in(path, ("model.pt", "best.ckpt"))
        raise ModelFileError(f"--init {str(path)!r} is a directory, not a model file or checkpoint"
                             + (f"; did you mean {str(inside)!r}?" if inside else ""))
    if not path.is_file():
        raise ModelFileError(f"--init {str(path)!r} does not exist")


def _apply_init_state(net, state: dict, source: str) -> list[str]:
    """Load matching tensors; tensors whose shape differs are allowed only in the readout/normalisation."""
    own = net.state_dict()
    usable, skipped = {}, []
    for key, value in state.items():
        if key not in own:
            continue  # derived constants a scripted module lists besides the state (index tables)
        if own[key].shape != value.shape:
            if key.startswith("readout.") or key in ("label_mean", "label_std"):
                skipped.append(key)
                continue
            raise ModelFileError(
                f"--init {source}: parameter {key!r} has shape {tuple(value.shape)}, the model needs "
                f"{tuple(own[key].shape)}"
            )
        usable[key] = value.to(own[key].dtype)
    missing = [k for k in own if k not in usable and k not in skipped]
    missing = [k for k in missing if not (k.startswith("readout.") or k in ("label_mean", "label_std"))]
    if missing:
        raise ModelFileError(f"--init {source}: lacks parameter(s) {missing[:3]} of the model being trained")
    net.load_state_dict(usable, strict=False)
    return skipped


def _freeze_backbone(net) -> None:
    """Only the readout learns (paper section IV: transfer to a new state point)."""
    for name, parameter in net.named_parameters():
        parameter.requires_grad = name.startswith("readout.")


def _set_train_mode(net, frozen_backbone: bool) -> None:
    net.train()
    if frozen_backbone:
        # A frozen backbone must compute a fixed function: no dropout, batch norm on its running statistics.
        for name, child in net.named_children():
            if name != "readout":
                child.eval()


# --------------------------------------------------------------------------------------------------
# The run


class _Run:
    """State of one training process (one rank)."""

    def __init__(self, run_dir: Path, config: TrainConfig, times: list[float], labelled: LabelledSet,
                 split: dict[str, list[str]], dist: _Dist, device: torch.device, init: str | None,
                 freeze_backbone: bool, progress: bool):
        from glassmd.model import GlassGNN

        self.run_dir = run_dir
        self.config = config
        self.times = times
        self.labelled = labelled
        self.split = split
        self.dist = dist
        self.device = device
        self.progress = progress and dist.is_main
        self.freeze_backbone = freeze_backbone
        self.dtype = torch.float64 if config.training["dtype"] == "float64" else torch.float32
        tr = config.training
        self.seed = int(tr["seed"])
        self.batch_size = int(tr["batch_size"])
        if self.batch_size % dist.world_size:
            raise GlassmdError(
                f"training.batch_size ({self.batch_size}) must be a multiple of the number of processes "
                f"({dist.world_size}): each process takes batch_size / processes configurations per step"
            )
        self.share = self.batch_size // dist.world_size
        self.forward_size = min(int(tr["forward_size"] or self.share), self.share)

        init_state = None
        model_config = config.model_config(times)
        if init is not None:
            init_config, init_state = _load_init(init)
            missing = [name for name in config.type_names if name not in init_config.type_names]
            if missing:
                raise ModelFileError(
                    f"--init {init}: type name(s) {missing} of the 'types' mapping are not types of that model "
                    f"({list(init_config.type_names)})"
                )
            import dataclasses

            model_config = dataclasses.replace(
                init_config, output_names=model_config.output_names, output_times=model_config.output_times
            )
        self.model_config = model_config
        self.type_map = {lammps: model_config.type_names.index(name) for lammps, name in config.types.items()}
        self.loss_type_ids = [model_config.type_names.index(name) for name in config.loss_types]

        cutoff = model_config.cutoff
        self.train_set = build_configurations(labelled, split["train"], times, self.type_map,
                                              self.loss_type_ids, cutoff, self.dtype)
        self.val_set = build_configurations(labelled, split["validation"], times, self.type_map,
                                            self.loss_type_ids, cutoff, self.dtype)
        self.test_ids = list(split["test"])

        labels = torch.cat([c.labels[c.loss_mask] for c in self.train_set]).to(torch.float64)
        if labels.shape[0] < 2:
            raise InputError("the training set has fewer than 2 particles of the loss types: nothing to learn")
        mean = labels.mean(0)
        std = labels.std(0)
        flat = [f"{t:g}" for t, s in zip(times, std.tolist()) if not s > 0]
        if flat:
            raise InputError(f"labels of timescale(s) {flat} are constant over the training set: nothing to learn")

        torch.manual_seed(self.seed)
        self.net = GlassGNN.create(model_config, self.dtype)  # constants computed in the training dtype
        if init_state is not None:
            skipped = _apply_init_state(self.net, init_state, str(init))
            if skipped and dist.is_main:
                _log(dist, f"--init: readout re-initialised for the new outputs ({', '.join(skipped)})")
        self.net.set_label_normalization(mean.to(self.dtype), std.to(self.dtype))
        if freeze_backbone:
            _freeze_backbone(self.net)
        self.net.to(device)
        self.label_mean = self.net.label_mean.detach().clone()
        self.label_std = self.net.label_std.detach().clone()

        opt = config.optimizer
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=opt["lr"], betas=tuple(opt["betas"]),
                                          weight_decay=opt["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=config.scheduler["milestones"], gamma=config.scheduler["gamma"]
        )
        self.model = self.net
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.net, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []
        self._tensorboard = None

    # ---------------------------------------------------------------------------------------------- checkpoints
    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _restore_rng(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _model_payload(self) -> dict:
        return {
            "model_config": self.model_config.to_dict(),
            "model_state": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
        }

    def save_checkpoints(self, improved: bool) -> None:
        if not self.dist.is_main:
            return
        model = self._model_payload()
        if improved:
            _atomic_torch_save({**model, "format": CHECKPOINT_FORMAT, "epoch": self.epoch,
                                "metric": self.best_metric, "times": self.times}, self.run_dir / "best.ckpt")
        payload = {
            **model,
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "glassmd_version": glassmd.__version__,
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self._rng_state(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "train_config": self.config.to_dict(),
            "times": self.times,
        }
        _atomic_torch_save(payload, self.run_dir / "last.ckpt")
        self._write_metrics_csv()

    def load_last(self) -> None:
        path = self.run_dir / "last.ckpt"
        if not path.is_file():
            return
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise GlassmdError(f"{path} could not be read ({exc}); it cannot be resumed") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise GlassmdError(f"{path} is not a glassmd training checkpoint")
        self.net.load_state_dict(payload["model_state"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.epoch = int(payload["epoch"])
        self.best_metric = float(payload["best_metric"])
        self.best_epoch = int(payload["best_epoch"])
        self.history = list(payload["history"])
        self._restore_rng(payload["rng"])

    def _write_metrics_csv(self) -> None:
        if not self.history:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.run_dir / "metrics.csv", buffer.getvalue())

    # ---------------------------------------------------------------------------------------------- epochs
    def _normalised(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels - self.label_mean) / self.label_std

    def _steps(self, epoch: int) -> list[np.ndarray]:
        n = len(self.train_set)
        order = np.random.default_rng(_derived_seed(self.seed, epoch, 1)).permutation(n)
        batches = [order[s : s + self.batch_size] for s in range(0, n, self.batch_size)]
        if self.dist.enabled and len(batches[-1]) % self.dist.world_size:
            # A remainder that does not split evenly over the processes is left for a later epoch.
            batches.pop()
        return batches

    def train_epoch(self, epoch: int) -> tuple[np.ndarray, float]:
        from tqdm import tqdm

        _set_train_mode(self.net, self.freeze_backbone)
        moments = torch.zeros(7, len(self.times), dtype=torch.float64, device=self.device)
        batches = self._steps(epoch)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{self.config.training['epochs']}", unit="step",
                   leave=False, disable=not self.progress, file=sys.stderr)
        lr = self.optimizer.param_groups[0]["lr"]
        for step, batch in enumerate(bar):
            share = len(batch) // self.dist.world_size
            first = step * self.batch_size + self.dist.rank * share
            mine = batch[self.dist.rank * share : (self.dist.rank + 1) * share]
            chunks = [mine[c : c + self.forward_size] for c in range(0, share, self.forward_size)]
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for k, chunk in enumerate(chunks):
                # Seeded by the chunk's place in the epoch, so the masks do not depend on who computes it.
                torch.manual_seed(_derived_seed(self.seed, epoch, 2, first + k * self.forward_size))
                data = collate([self.train_set[i] for i in chunk]).to(self.device)
                sync = k == len(chunks) - 1 or not self.dist.enabled
                with contextlib.nullcontext() if sync else self.model.no_sync():
                    pred = self.model(data.types, data.edge_index, data.edge_vec)
                    target = self._normalised(data.labels)
                    pred_m, target_m = pred[data.loss_mask], target[data.loss_mask]
                    loss = torch.mean((pred_m - target_m) ** 2)
                    (loss * (len(chunk) / share)).backward()
                moments += _moments(pred_m, target_m)
                step_loss += float(loss.detach()) * len(chunk) / share
            self.optimizer.step()
            bar.set_postfix(loss=f"{step_loss:.4f}")
        bar.close()
        self.dist.all_reduce_sum(moments)
        return moments.cpu().numpy(), lr

    def recalibrate_batch_norm(self) -> None:
        """Running statistics re-measured without dropout on a fixed sample of training configurations (see
        :func:`glassmd.model.norm.recalibrate_batch_norm`). Every process uses the same sample, so the
        statistics agree across processes; a frozen backbone keeps the statistics it came with."""
        from glassmd.model.norm import recalibrate_batch_norm

        count = min(int(self.config.training["bn_recalibration"]), len(self.train_set))
        if count == 0 or self.freeze_backbone:
            return
        sample = np.random.default_rng(_derived_seed(self.seed, 3)).permutation(len(self.train_set))[:count]
        groups = [sample[c : c + self.forward_size] for c in range(0, count, self.forward_size)]

        def forward(net, group):
            data = collate([self.train_set[i] for i in group]).to(self.device)
            net(data.types, data.edge_index, data.edge_vec)

        recalibrate_batch_norm(self.net, groups, forward)

    @torch.no_grad()
    def predict(self, configurations: Sequence[Configuration]) -> list[torch.Tensor]:
        """Normalised predictions of each configuration (eval mode), on this process."""
        self.net.eval()
        out = []
        for c in range(0, len(configurations), self.forward_size):
            group = configurations[c : c + self.forward_size]
            data = collate(group).to(self.device)
            pred = self.net(data.types, data.edge_index, data.edge_vec)
            out.extend(torch.split(pred, data.sizes))
        return out

    def validate(self) -> np.ndarray:
        mine = self.val_set[self.dist.rank :: self.dist.world_size]
        moments = torch.zeros(7, len(self.times), dtype=torch.float64, device=self.device)
        for config, pred in zip(mine, self.predict(mine)):
            mask = config.loss_mask.to(self.device)
            moments += _moments(pred[mask], self._normalised(config.labels.to(self.device))[mask])
        self.dist.all_reduce_sum(moments)
        return moments.cpu().numpy()

    def _history_row(self, epoch_seconds: float, lr: float, train_m: np.ndarray, val_m: np.ndarray) -> dict:
        def loss(m):
            count = m[0].sum()
            return float(m[6].sum() / count) if count > 0 else float("nan")

        row: dict[str, float] = {"epoch": self.epoch, "lr": lr, "train_loss": loss(train_m), "val_loss": loss(val_m)}
        train_r, val_r = pearson_from_moments(train_m), pearson_from_moments(val_m)
        for t, r in zip(self.times, train_r):
            row[f"train_pearson_t{t:g}"] = float(r)
        for t, r in zip(self.times, val_r):
            row[f"val_pearson_t{t:g}"] = float(r)
        row["train_pearson_mean"] = float(np.mean(train_r))
        row["val_pearson_mean"] = float(np.mean(val_r))
        row["seconds"] = round(epoch_seconds, 3)
        return row

    def _tensorboard_log(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tensorboard = False
                return
            self._tensorboard = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if self._tensorboard:
            for key, value in row.items():
                if key != "epoch" and not (isinstance(value, float) and math.isnan(value)):
                    self._tensorboard.add_scalar(key, value, row["epoch"])
            self._tensorboard.flush()

    def fit(self, max_epochs_this_run: int | None) -> int:
        total = int(self.config.training["epochs"])
        stop = total if max_epochs_this_run is None else min(total, self.epoch + max_epochs_this_run)
        while self.epoch < stop:
            start = time.perf_counter()
            train_m, lr = self.train_epoch(self.epoch)
            self.recalibrate_batch_norm()
            val_m = self.validate()
            self.scheduler.step()
            self.epoch += 1
            row = self._history_row(time.perf_counter() - start, lr, train_m, val_m)
            self.history.append(row)
            metric = row["val_pearson_mean"] if self.val_set else row["train_pearson_mean"]
            improved = not math.isnan(metric) and metric > self.best_metric
            if improved or self.best_epoch == 0:
                self.best_metric = metric if not math.isnan(metric) else -math.inf
                self.best_epoch = self.epoch
                improved = True
            self.save_checkpoints(improved)
            self._tensorboard_log(row)
            _log(self.dist, _epoch_line(row, self.times, total))
            self.dist.barrier()
        if self._tensorboard:
            self._tensorboard.close()
        return self.epoch


def _epoch_line(row: dict, times: list[float], total: int) -> str:
    train_r = " ".join(f"{row[f'train_pearson_t{t:g}']:.3f}" for t in times)
    val_r = " ".join(f"{row[f'val_pearson_t{t:g}']:.3f}" for t in times)
    return (f"epoch {row['epoch']}/{total}  lr {row['lr']:.3g}  train loss {row['train_loss']:.4f} pearson {train_r}"
            f"  |  val loss {row['val_loss']:.4f} pearson {val_r}  ({row['seconds']:.1f} s)")


# --------------------------------------------------------------------------------------------------
# Entry points


def _check_new_run_dir(run_dir: Path) -> None:
    if run_dir.exists():
        if not run_dir.is_dir():
            raise GlassmdError(f"run directory {str(run_dir)!r} exists and is not a directory")
        if any(run_dir.iterdir()):
            raise GlassmdError(
                f"run directory {str(run_dir)!r} is not empty; continue it with --resume {run_dir} "
                "or choose a new directory"
            )


def _prepare(run_dir: Path, config: TrainConfig, times: list[float], files: list[Path],
             split_file: Path | None, fresh: bool) -> tuple[LabelledSet, dict[str, list[str]]]:
    """Read and check the data and the split; every input error surfaces here, before any training."""
    labelled = load_labelled_set(files, times)
    if split_file is not None:
        split = read_split(split_file, labelled.ids)
    else:
        split = make_split(labelled.ids, config.split, config.split["seed"])
    if not split["train"]:
        raise InputError(
            f"the training set is empty: {len(labelled)} configuration(s) in the inputs, split "
            f"{len(split['train'])}/{len(split['validation'])}/{len(split['test'])} (train/validation/test); "
            "add configurations or raise split.train"
        )
    return labelled, split


@contextlib.contextmanager
def _deterministic(enabled: bool):
    """Deterministic kernels for the duration of a run (the previous setting is restored after)."""
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        # warn_only: a CUDA kernel without a deterministic version warns instead of stopping the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def train(options: TrainOptions) -> TrainResult:
    """Train a model as ``glassmd train`` does (see the module docstring for the run directory)."""
    with _deterministic(options.config.training["deterministic"]):
        return _train(options)


def _train(options: TrainOptions) -> TrainResult:
    run_dir = Path(options.run_dir)
    config = options.config.with_times(list(options.times) if options.times is not None else None)
    if not config.times:
        raise GlassmdError("no timescale to learn: give --times (e.g. --times 10) or 'times' in the config")
    if options.freeze_backbone and options.init is None:
        raise GlassmdError("--freeze-backbone needs --init MODEL_OR_CKPT (the model whose backbone is kept)")
    if options.max_epochs_this_run is not None and options.max_epochs_this_run < 1:
        raise GlassmdError("--max-epochs-this-run must be >= 1")
    _check_new_run_dir(run_dir)
    files = find_dump_files(options.inputs)
    if options.init is not None:
        _check_init_path(Path(options.init))
    dist, device = _setup_distributed(options.device)
    labelled, split = _prepare(run_dir, config, config.times, files,
                               Path(options.split_file) if options.split_file else None, fresh=True)
    run = _Run(run_dir, config, config.times, labelled, split, dist, device,
               str(Path(options.init).resolve()) if options.init else None, options.freeze_backbone,
               options.progress)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_info = {
            "inputs": [str(f.resolve()) for f in files],
            "times": config.times,
            "init": str(Path(options.init).resolve()) if options.init else None,
            "freeze_backbone": bool(options.freeze_backbone),
            "glassmd_version": glassmd.__version__,
            "torch_version": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "world_size": dist.world_size,
        }
        atomic_write_text(run_dir / "run.json", json.dumps(run_info, indent=1) + "\n")
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(_used_config(config, run), sort_keys=False))
        write_split(run_dir / "split.json", split)
        _log(dist, _summary(run, device))
    dist.barrier()
    return _continue(run, options.max_epochs_this_run)


def _used_config(config: TrainConfig, run: "_Run") -> dict:
    """The configuration as trained: with --init the architecture is the init model's, so the ``model`` section
    written to config.yaml is that one (the run's file would otherwise describe a network it does not hold)."""
    data = config.to_dict()
    built = run.model_config.to_dict()
    model = {key: built.get(key, value) for key, value in data["model"].items()}
    changed = [f"{key} {data['model'][key]} -> {value}" for key, value in model.items() if value != data["model"][key]]
    if changed:
        _log(run.dist, f"--init: the architecture is the init model's ({', '.join(changed)})")
    data["model"] = model
    return data


def resume(run_dir: str | Path, device: str = "auto", max_epochs_this_run: int | None = None,
           progress: bool = True) -> TrainResult:
    """Continue the run in ``run_dir`` from its ``last.ckpt`` (or finish its report if training is done)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    deterministic = load_config(config_path).training["deterministic"] if config_path.is_file() else True
    with _deterministic(deterministic):
        return _resume(run_dir, device, max_epochs_this_run, progress)


def _resume(run_dir: Path, device: str, max_epochs_this_run: int | None, progress: bool) -> TrainResult:
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise GlassmdError(f"{str(run_dir)!r} is not a glassmd training run (no run.json)")
    info = json.loads(info_path.read_text())
    config = load_config(run_dir / "config.yaml")
    files = [Path(f) for f in info["inputs"]]
    for f in files:
        if not f.is_file():
            raise InputError(f"input {str(f)!r} of the run in {run_dir} no longer exists")
    dist, device = _setup_distributed(device)
    labelled, split = _prepare(run_dir, config, config.times, files, run_dir / "split.json", fresh=False)
    run = _Run(run_dir, config, config.times, labelled, split, dist, device, info.get("init"),
               bool(info.get("freeze_backbone")), progress)
    run.load_last()
    _log(dist, f"resuming {run_dir} after epoch {run.epoch} of {config.training['epochs']}")
    return _continue(run, max_epochs_this_run)


def _summary(run: _Run, device: torch.device) -> str:
    from glassmd.model import count_parameters

    s = run.split
    return (
        f"training {count_parameters(run.net)} parameters on {device} ({run.dist.world_size} process(es)); "
        f"timescales {', '.join(f'{t:g}' for t in run.times)}; configurations {len(s['train'])} train, "
        f"{len(s['validation'])} validation, {len(s['test'])} test; run directory {run.run_dir}"
    )


def _continue(run: _Run, max_epochs_this_run: int | None) -> TrainResult:
    total = int(run.config.training["epochs"])
    run.fit(max_epochs_this_run)
    if run.epoch < total:
        _log(run.dist, f"stopped after epoch {run.epoch} of {total}; continue with: glassmd train --resume {run.run_dir}")
        return TrainResult(run.run_dir, run.epoch, False, None)
    report = None
    if run.dist.is_main:
        from glassmd.train.report import finalize_run

        report = finalize_run(run)
    run.dist.barrier()
    return TrainResult(run.run_dir, run.epoch, True, report)
