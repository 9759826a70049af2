"""The training loop for both models: AdamW, linear warm-up then cosine decay, gradient clipping,
bf16 autocast on GPU, validation on held-out shards, TensorBoard logs, periodic checkpoints and exact
resume. One process, or one per GPU under torchrun (DDP). What differs between the models (the module
trained, EMA and latent statistics, validation values) is the objective's (train/objectives.py).

Where the paper's text is open or we depart from it: the paper names Adam with cosine annealing; we
use AdamW (weight decay 0.01, betas 0.9 / 0.99) with a linear warm-up before the cosine, a global
gradient-norm clip of 1.0, and (diffusion) EMA weights with decay 0.9999 for validation and sampling,
as EDM and latent-diffusion training do."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import torch
import webdataset as wds
from torch.nn.parallel import DistributedDataParallel

from dataset.clip_sample import ClipSample
from dataset.loaders import make_loader
from train import checkpoint, distributed, motion_diagnostics
from train.config import TrainConfig


def lr_factor(step: int, optim, max_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to min_lr_ratio at max_steps."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    span = max(1, max_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    def __init__(self, cfg: TrainConfig, shards: list[str], out_dir: str, val_shards: list[str] | None = None,
                 vae_checkpoint: str | None = None, resume: bool = False):
        self.cfg, self.shards, self.val_shards, self.out_dir = cfg, shards, val_shards, out_dir
        self.rt = distributed.start()
        if self.rt.distributed and not cfg.data.resampled:
            raise ValueError("training in several processes needs data.resampled: true (ranks would otherwise "
                             "run out of shards at different steps)")
        torch.manual_seed(cfg.seed + self.rt.rank)
        self.objective = checkpoint.new_objective(cfg, vae_checkpoint)
        if not cfg.data.anchors:  # the loader's workers compute the anchors, not the training step
            cfg.data = dataclasses.replace(cfg.data, anchors=cfg.vae.num_latents)
        self.objective.to(self.rt.device)
        self.params = [p for p in self.objective.parameters() if p.requires_grad]
        # the VAE's locality-bias widths are log-distances, not weights: decay would pull every
        # width towards one world unit (a group of their own only where they exist, so checkpoints
        # of models without them keep their single group)
        widths = [p for n, p in self.objective.named_parameters() if p.requires_grad and n.endswith("_log_width")]
        skip = {id(w) for w in widths}
        groups = [{"params": [p for p in self.params if id(p) not in skip]}]
        if widths:
            groups.append({"params": widths, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                                           weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.optim, cfg.max_steps))
        self.step = self.epoch = self.batch_in_epoch = 0
        if resume and (path := checkpoint.latest(out_dir)):
            self._restore(path)
        self.model = self.objective
        if self.rt.distributed:
            self.model = DistributedDataParallel(self.objective, device_ids=[self.rt.device.index]
                                                 if self.rt.device.type == "cuda" else None)
        if cfg.compile:  # the whole step's forward (DDP's optimizer splits the graph at bucket boundaries)
            self.model = torch.compile(self.model)
        self.writer = None
        if self.rt.is_main:
            from torch.utils.tensorboard import SummaryWriter
            os.makedirs(out_dir, exist_ok=True)
            self.writer = SummaryWriter(os.path.join(out_dir, "tensorboard"))
            with open(os.path.join(out_dir, "config.json"), "w") as f:
                json.dump(self._config_dict(), f, indent=1)
        self.history: list[dict] = []
        self.validations: list[dict] = []  # {"step", validation values} of each validation of this process

    # -- state -----------------------------------------------------------------------------------
    def _config_dict(self) -> dict:
        return dataclasses.asdict(self.cfg)

    def _state(self) -> dict:
        return {"config": self._config_dict(), "model": self.objective.trained.state_dict(),
                **self.objective.extra_state(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "rng": checkpoint.rng_state()}

    def _restore(self, path: str) -> None:
        state = checkpoint.load(path, map_location=self.rt.device)
        self.objective.trained.load_state_dict(state["model"])
        self.objective.load_extra_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if self.rt.is_main:
            checkpoint.set_rng_state(state["rng"])
        else:  # other ranks: their own stream, reproducible from the step
            torch.manual_seed(self.cfg.seed + self.rt.rank + 1_000_003 * self.step)
        self._print(f"resumed from {path} at step {self.step}")

    def save(self) -> str | None:
        checksum = distributed.assert_ranks_in_sync(self.objective, self.rt)
        path = None
        if self.rt.is_main:
            path = checkpoint.save(self.out_dir, self.step, self._state())
            self._print(f"checkpoint {path} (parameter checksum {checksum:.6e}, ranks in sync: {self.rt.world_size})")
        if self.rt.distributed:
            torch.distributed.barrier()
        return path

    # -- steps -----------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.rt.device.type == "cuda")

    def prepare(self) -> None:
        """The objective's preparation before the first step (diffusion: the latent statistics, over the
        first batches of the data), unless a checkpoint already brought it."""
        if self.objective.ready:
            return
        loader = make_loader(self.shards, self.cfg.kind, self.cfg.data, self.cfg.batch_size, 0, epoch=0)
        with self._autocast():
            message = self.objective.prepare((to_device(b, self.rt.device) for b in loader),
                                             lambda v: distributed.mean_across_ranks(v, self.rt))
        if message:
            self._print(message)

    def train_step(self, batch: dict) -> dict:
        self.model.train()
        batch = to_device(batch, self.rt.device)
        with self._autocast():
            out = self.model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = None
        if self.cfg.optim.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.objective.after_step()
        self.step += 1
        self.batch_in_epoch += 1
        result = {k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v) and v.ndim == 0}
        if grad_norm is not None:
            result["grad_norm"] = grad_norm
        return result

    @torch.no_grad()
    def validate(self) -> dict:
        """The objective's validation values (VAE: Chamfer, per-point L2 and loss of the reconstruction;
        diffusion: the EDM loss of the EMA denoiser) averaged over held-out clips, with a fixed noise
        generator so steps compare."""
        if not self.val_shards:
            return {}
        cfg = dataclasses.replace(self.cfg.data, resampled=False, shuffle_buffer=0)
        loader = make_loader(self.val_shards, self.cfg.kind, cfg, self.cfg.batch_size, 0, drop_last=False)
        sums, n = {}, 0
        gen = torch.Generator(self.rt.device).manual_seed(1234)
        self.objective.eval()
        for i, batch in enumerate(loader):
            if i == self.cfg.val_batches:
                break
            batch = to_device(batch, self.rt.device)
            with self._autocast():
                values = self.objective.validation(batch, gen)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + float(v.float().sum())
            n += len(batch["p1"])
        out = {k: distributed.mean_across_ranks(v / max(n, 1), self.rt) for k, v in sums.items()}
        return {**out, **self.validate_clips()}

    @torch.no_grad()
    def validate_clips(self) -> dict:
        """The objective's whole-clip figures on the first `val_clips` held-out clips (each against the
        static and time-mean controls), as clip_<name>: a frame-blind model shows here, not in the loss."""
        if not self.val_shards or not self.cfg.val_clips:
            return {}
        data = dataclasses.replace(self.cfg.data, resample_points=False)
        gen = torch.Generator(self.rt.device).manual_seed(1234)
        per_clip = []
        self.objective.eval()
        for i, sample in enumerate(wds.WebDataset(self.val_shards, shardshuffle=False, empty_check=False)):
            if i == self.cfg.val_clips:
                break
            with self._autocast():
                per_clip.append(self.objective.clip_validation(ClipSample(sample), data, gen))
        means = motion_diagnostics.mean_scores(per_clip)
        return {f"clip_{k}": distributed.mean_across_ranks(v, self.rt) for k, v in means.items()}

    # -- loop ------------------------------------------------------------------------------------
    def _print(self, msg: str) -> None:
        if self.rt.is_main:
            print(msg, flush=True)

    def _log(self, values: dict, prefix: str) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, self.step)

    def fit(self, max_steps: int | None = None, time_budget_s: float | None = None) -> list[dict]:
        """Train to `max_steps` (the config's by default), or until `time_budget_s` of training have
        passed (then the step reached is the last: validated and checkpointed); returns the per-step
        records of this call."""
        stop_at = max_steps if max_steps is not None else self.cfg.max_steps
        deadline = None if time_budget_s is None else time.perf_counter() + time_budget_s
        self.prepare()
        self._print(f"training {self.cfg.kind} ({self.cfg.name}) on {self.rt.world_size} process(es), "
                    f"device {self.rt.device}; outputs in {self.out_dir}")
        tick, samples = time.perf_counter(), 0
        while self.step < stop_at:
            loader = make_loader(self.shards, self.cfg.kind, self.cfg.data, self.cfg.batch_size,
                                 self.cfg.num_workers, epoch=self.epoch, skip_batches=self.batch_in_epoch)
            started_empty = self.batch_in_epoch == 0
            got = False
            for batch in loader:
                got = True
                record = {"step": self.step + 1, "epoch": self.epoch, **self.train_step(batch),
                          "lr": self.scheduler.get_last_lr()[0]}
                self.history.append(record)
                samples += len(batch["p1"]) * self.rt.world_size
                if deadline is not None and distributed.any_rank(time.perf_counter() > deadline, self.rt):
                    stop_at = self.step  # the time is up (on any rank: all stop together): this step closes the run
                if self.step % self.cfg.log_every == 0 or self.step == stop_at:
                    rate = samples / (time.perf_counter() - tick)
                    self._print(f"step {self.step} epoch {self.epoch} loss {record['loss']:.5f} "
                                f"lr {record['lr']:.2e} {rate:.1f} samples/s")
                    self._log({**record, "samples_per_s": rate}, "train")
                    tick, samples = time.perf_counter(), 0
                if self.step % self.cfg.val_every == 0 or self.step == stop_at:
                    val = self.validate()
                    if val:
                        self.validations.append({"step": self.step, **val})
                        self._print("validation " + ", ".join(f"{k} {v:.6f}" for k, v in val.items()))
                        self._log(val, "val")
                if self.step % self.cfg.checkpoint_every == 0 or self.step == stop_at:
                    self.save()
                if self.step >= stop_at:
                    break
            else:
                if started_empty and not got:
                    raise ValueError(f"no {self.cfg.kind} batches from {self.shards}: fewer clips than "
                                     f"batch_size={self.cfg.batch_size}, or unreadable shards")
                self.epoch += 1
                self.batch_in_epoch = 0
        if self.writer is not None:
            self.writer.flush()
        return self.history

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        distributed.stop(self.rt)
