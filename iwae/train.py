"""Training CLI: ``python -m iwae.train --objective iwae --k 50 --out checkpoints/iwae-k50.safetensors``.

Writes the model checkpoint (weights + metadata) after every epoch and a resume file
(``<out stem>.resume.safetensors``: weights, Adam state, RNG state, position) every
``--save-every`` seconds, at the end of every epoch, and on Ctrl-C / SIGTERM. ``--resume``
continues from the resume file and reproduces the uninterrupted run on CPU.

Both files are written atomically (temporary file, fsync, rename), so a SIGKILL at any moment leaves each one either
absent, as before, or complete; ``--resume`` after it loses only the steps since the last resume file and still ends
with the uninterrupted run's weights. A run removes temporary files that killed runs left behind, and a resume at
an epoch boundary rewrites the checkpoint if the kill came between the epoch's resume file and its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import data as data_mod
from .bounds import ESTIMATORS, OBJECTIVES, iwae_bound, training_loss, vae_k_bound
from .checkpoints import (
    FORMAT,
    CheckpointError,
    atomic_save_tensors,
    read_metadata,
    read_tensors,
    remove_stale_temp_files,
    save_checkpoint,
)
from .cpu import flush_denormals, keep_freed_memory
from .model import VAE, ModelConfig

SCHEDULES = ("decay", "paper", "constant")
PAPER_STAGES = 8  # i = 0..7 in lr * 10^(-i/7) for 3^i epochs


def learning_rate(schedule: str, base_lr: float, epoch: int, total_epochs: int) -> float:
    """The learning rate for a 0-based epoch.

    - paper: Burda et al., base_lr * 10^(-i/7) for 3^i epochs, i = 0..7 (3,280 epochs in all);
    - decay (default): the same eight rates, in eight equal stages over ``total_epochs``;
    - constant: base_lr throughout.
    """
    if schedule == "constant":
        return base_lr
    if schedule == "paper":
        stage, end = 0, 1
        while epoch >= end and stage < PAPER_STAGES - 1:
            stage += 1
            end += 3**stage
        return base_lr * 10 ** (-stage / 7)
    if schedule == "decay":
        stage = min(PAPER_STAGES - 1, epoch * PAPER_STAGES // max(total_epochs, 1))
        return base_lr * 10 ** (-stage / 7)
    raise ValueError(f"schedule must be one of {SCHEDULES}")


def resume_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".safetensors") + ".resume.safetensors")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m iwae.train", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    p.add_argument("--data-dir", default=None, help=f"MNIST folder (default: ${data_mod.DATA_DIR_ENV} or a cache dir)")
    p.add_argument("--objective", choices=OBJECTIVES, default="iwae")
    p.add_argument("--k", type=int, default=50, help="samples per image")
    p.add_argument("--estimator", choices=ESTIMATORS, default="standard", help="gradient estimator (dreg: iwae only)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=SCHEDULES, default="decay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path, e.g. checkpoints/iwae-k50.safetensors")
    p.add_argument("--resume", action="store_true", help="continue from <out>.resume.safetensors")
    p.add_argument("--save-every", type=float, default=120.0, help="seconds between resume files")
    p.add_argument("--eval-images", type=int, default=2000, help="test images for the per-epoch test bound")
    p.add_argument("--max-train-images", type=int, default=0, help="use only the first N training images (0: all)")
    p.add_argument("--stop-after-steps", type=int, default=0, help=argparse.SUPPRESS)  # tests: simulate a kill
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.k < 1 or args.epochs < 1 or args.batch_size < 1:
        p.error("--k, --epochs and --batch-size must be positive")
    if args.estimator == "dreg" and args.objective != "iwae":
        p.error("--estimator dreg needs --objective iwae")
    if not args.out.name.endswith(".safetensors"):
        p.error("--out must end in .safetensors")
    return args


RECORDED_ARGS = ("dataset", "objective", "k", "estimator", "epochs", "batch_size", "lr", "schedule", "seed",
                 "max_train_images")


def portable_command(args: argparse.Namespace) -> str:
    """The command that reproduces this run on any machine: every setting that shapes the weights, spelled out,
    and no folder of this machine (the data folder is found as the README says; the output is named by file)."""
    out = args.out if not args.out.is_absolute() else Path("checkpoints") / args.out.name
    parts = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in RECORDED_ARGS]
    return f"python -m iwae.train {' '.join(parts)} --out {out.as_posix()}"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class StopFlag:
    """Ctrl-C and SIGTERM set a flag; the loop saves and exits between two steps."""

    def __init__(self):
        self.stop = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.stop = True

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def optimizer_tensors(opt: torch.optim.Adam) -> dict[str, torch.Tensor]:
    state = opt.state_dict()["state"]
    out = {}
    for idx, s in state.items():
        out[f"adam.{idx}.exp_avg"] = s["exp_avg"]
        out[f"adam.{idx}.exp_avg_sq"] = s["exp_avg_sq"]
        out[f"adam.{idx}.step"] = torch.as_tensor(s["step"], dtype=torch.float64).reshape(1)
    return out


def restore_optimizer(opt: torch.optim.Adam, tensors: dict[str, torch.Tensor], device) -> None:
    sd = opt.state_dict()
    for idx in range(len(sd["param_groups"][0]["params"])):
        if f"adam.{idx}.step" not in tensors:
            continue
        sd["state"][idx] = {
            "step": tensors[f"adam.{idx}.step"].reshape(()).float(),
            "exp_avg": tensors[f"adam.{idx}.exp_avg"].to(device),
            "exp_avg_sq": tensors[f"adam.{idx}.exp_avg_sq"].to(device),
        }
    opt.load_state_dict(sd)


@torch.no_grad()
def test_bound(model: VAE, x_test: torch.Tensor, objective: str, k: int) -> float:
    """Mean of the training objective's bound on fixed test images, with a fixed sampling seed."""
    gen = torch.Generator(device=x_test.device).manual_seed(0)
    reducer = vae_k_bound if objective == "vae" else iwae_bound
    total = 0.0
    for chunk in x_test.split(max(1, 20000 // k)):
        total += reducer(model.log_weights(chunk, k, gen).log_w).sum().item()
    return total / len(x_test)


RESUME_MUST_MATCH = ("objective", "k", "estimator", "batch_size", "seed", "dataset", "epochs", "schedule", "lr",
                     "max_train_images")


class UsageError(Exception):
    """A problem with the command line or the files it names: printed, exit status 2."""


class TrainingRun:
    """One training run: the model, its optimizer and random stream, and the position in the schedule, with the
    files that describe them (the checkpoint after every epoch, the resume file)."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.device = args, pick_device(args.device)
        try:
            train = data_mod.load_dataset(args.dataset, "train", args.data_dir)
            test = data_mod.load_dataset(args.dataset, "test", args.data_dir)
        except data_mod.DataError as exc:
            raise UsageError(str(exc)) from None
        self.x_train = train.images[: args.max_train_images or None].to(self.device)
        self.x_test = data_mod.binarize_fixed(test.images[: args.eval_images]).to(self.device)
        self.config = ModelConfig(input_dim=self.x_train.shape[1])
        torch.manual_seed(args.seed)  # weight initialization
        self.model = VAE(self.config).to(self.device)
        self.model.init_output_bias(self.x_train.mean(0))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-4)
        self.gen = torch.Generator(device=self.device).manual_seed(args.seed)  # binarization and z samples
        self.n_batches = math.ceil(len(self.x_train) / args.batch_size)
        self.epoch, self.step, self.history, self.elapsed = 0, 0, [], 0.0
        self.bound_carry = 0.0  # sum of the bound over this epoch's steps before a resume
        self.rpath = resume_path(args.out)

    def load_resume(self) -> None:
        tensors, header = read_tensors(self.rpath)
        state = json.loads(header["resume"])
        for key in RESUME_MUST_MATCH:
            if state["args"][key] != getattr(self.args, key):
                raise UsageError(f"--{key.replace('_', '-')} {getattr(self.args, key)} differs from the run being "
                                 f"resumed ({state['args'][key]})")
        self.model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        restore_optimizer(self.opt, tensors, self.device)
        self.gen.set_state(tensors["rng"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        self.elapsed, self.bound_carry = state["elapsed"], state["bound_sum"]

    def metadata(self) -> dict:
        args = self.args
        return {
            "config": self.config.to_dict(),
            "objective": args.objective,
            "k": args.k,
            "estimator": args.estimator,
            "epochs": len(self.history),
            "seed": args.seed,
            "data": {
                "dataset": args.dataset,
                "train_images": len(self.x_train),
                "train_binarization": "dynamic (fresh Bernoulli draw per minibatch)",
                "test_binarization_seed": data_mod.TEST_BINARIZATION_SEED,
            },
            "training": {
                "command": portable_command(args),
                "batch_size": args.batch_size, "lr": args.lr, "schedule": args.schedule,
                "optimizer": "Adam(betas=(0.9, 0.999), eps=1e-4)", "device": str(self.device),
                "threads": torch.get_num_threads(), "seconds": self.elapsed,
            },
            "history": self.history,
            "metrics": {},
        }

    def save_resume(self, epoch_now: int, step_now: int, bound_sum_now: float) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update(optimizer_tensors(self.opt))
        tensors["rng"] = self.gen.get_state()
        run_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.args).items()}
        state = {"epoch": epoch_now, "step": step_now, "bound_sum": bound_sum_now, "history": self.history,
                 "elapsed": self.elapsed, "args": run_args}
        atomic_save_tensors(tensors, {"format": FORMAT + "-resume", "resume": json.dumps(state)}, self.rpath)

    def rewrite_checkpoint_if_behind(self) -> None:
        """Resumed at an epoch boundary: the end-of-epoch resume file is written just before the checkpoint, so a
        kill between the two leaves the checkpoint one epoch behind (or absent). The resumed weights are exactly
        that epoch's end: write the checkpoint now (also when the run is already finished)."""
        try:
            current = len(read_metadata(self.args.out)["history"]) == len(self.history)
        except CheckpointError:
            current = False
        if not current:
            save_checkpoint(self.model, self.metadata(), self.args.out)
            print(f"rewrote {self.args.out} (epoch {len(self.history)}): it was missing or behind the resume file")

    def run_epoch(self, flag: StopFlag, steps_run: int) -> tuple[bool, int]:
        """Train from the current step to the epoch's end, then record and save it.  -> (interrupted, steps_run)"""
        args, epoch = self.args, self.epoch
        lr = learning_rate(args.schedule, args.lr, epoch, args.epochs)
        for group in self.opt.param_groups:
            group["lr"] = lr
        perm = torch.randperm(len(self.x_train), generator=torch.Generator().manual_seed(args.seed * 100003 + epoch))
        self.model.train()
        bound_sum = torch.tensor(self.bound_carry, dtype=torch.float64, device=self.device)
        self.bound_carry = 0.0
        t_epoch, last_save, first_step = time.time(), time.time(), self.step
        bar = tqdm(range(self.step, self.n_batches), desc=f"epoch {epoch + 1}/{args.epochs}", disable=args.quiet,
                   leave=False, dynamic_ncols=True)
        for step in bar:
            idx = perm[step * args.batch_size : (step + 1) * args.batch_size].to(self.device)
            x = data_mod.binarize(self.x_train[idx], self.gen)  # dynamic binarization
            loss, bound = training_loss(self.model, x, args.objective, args.k, args.estimator, self.gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            bound_sum += bound.sum()
            steps_run += 1
            if step % 20 == 0:
                rate = (step + 1 - first_step) * args.batch_size * args.k / max(time.time() - t_epoch, 1e-9)
                bar.set_postfix(bound=f"{bound.mean().item():.2f}", samples_x_k_per_s=f"{rate:.3g}")
            interrupted = flag.stop or bool(args.stop_after_steps and steps_run >= args.stop_after_steps)
            if interrupted or time.time() - last_save > args.save_every:
                self.elapsed += time.time() - last_save
                last_save = time.time()
                self.save_resume(epoch, step + 1, bound_sum.item())
            if interrupted:
                bar.close()
                print(f"interrupted: saved {self.rpath} at epoch {epoch + 1}, step {step + 1}; rerun with --resume")
                return True, steps_run
        bar.close()
        self.elapsed += time.time() - last_save
        self.model.eval()
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_bound": bound_sum.item() / len(self.x_train),
            "test_bound": test_bound(self.model, self.x_test, args.objective, args.k),
            "test_images": len(self.x_test),
            "seconds": time.time() - t_epoch,
        }
        self.history.append(record)
        self.epoch, self.step = epoch + 1, 0
        self.save_resume(self.epoch, 0, 0.0)
        save_checkpoint(self.model, self.metadata(), args.out)
        if not args.quiet:
            print(f"epoch {self.epoch}: lr {lr:.2e}  train bound {record['train_bound']:.3f}  "
                  f"test bound ({args.objective} k={args.k}, {len(self.x_test)} fixed-binarized images) "
                  f"{record['test_bound']:.3f}  {record['seconds']:.1f}s", flush=True)
        return False, steps_run


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    flush_denormals()
    try:
        run = TrainingRun(args)
        for target in (args.out, run.rpath):  # left by a process killed in the middle of a save
            for stale in remove_stale_temp_files(target):
                print(f"removed {stale}: a temporary file left by an interrupted save")
        if args.resume:
            if not run.rpath.exists():
                raise UsageError(f"--resume given but {run.rpath} does not exist")
            run.load_resume()
            print(f"resuming {args.out} at epoch {run.epoch + 1}, step {run.step}/{run.n_batches}")
        elif run.rpath.exists():
            raise UsageError(f"{run.rpath} exists: pass --resume to continue that run, or delete it to start over")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.resume and run.step == 0 and run.history:
        run.rewrite_checkpoint_if_behind()
    steps_run = 0
    with StopFlag() as flag:
        while run.epoch < args.epochs:
            interrupted, steps_run = run.run_epoch(flag, steps_run)
            if interrupted:
                return 130
    print(f"done: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
