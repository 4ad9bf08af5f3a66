"""A run folder's life, for every training stage (SFT today; the RL stage uses the same).

Layout of a finished run folder (`train.output_dir`): the PEFT adapter (adapter_config.json,
adapter_model.safetensors), the tokenizer, config.yaml (every setting), metrics.jsonl (one line
per logged step and held-out measurement), loss_curve.png, summary.json, README.md (the model
card) and the manifest of thinktune's outputs (outputs.MANIFEST). It is built in `.<name>.partial/` beside the target and renamed into place only when
complete, so a failed or killed run never leaves a half-written adapter or summary where a
finished run would be. Checkpoints (train.save_steps) live in `.<name>.partial/checkpoints/`,
sealed when complete; `--resume` continues from the newest sealed one. While a run lives it holds
`.<name>.lock` beside the target, so a second run into the same folder is refused. Under `torchrun` or
`accelerate launch` every process trains, and only the main one writes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from . import checkpoints
from . import config as config_mod
from .atomic import dumps, write_json, write_jsonl, write_text
from .errors import Interrupted, UserError
from .events import Event, Finished, Message, OnEvent, Started, failure, ignore
from .outputs import claim, publish
from .plots import loss_curve, reward_curve

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs into one folder are not guarded there
    fcntl = None  # type: ignore[assignment]

# Settings that may differ between a run and its --resume without changing what is trained (the
# speed levers give the same updates: tests/test_speed.py).
RESUME_FREE = {
    "train.overwrite",
    "train.logging_steps",
    "train.eval_steps",
    "train.save_steps",
    "train.save_total_limit",
    "train.keep_checkpoints",
    "train.rows_per_pass",
    "train.head_on_labels",
    "train.packing",
    "train.gradient_checkpointing",
}
# Settings that decide which rows each step trains on: the checkpoint's step would point into
# another order, so a resume with them changed is refused (issue 13). Every other train.* change
# (lr, schedule, epochs, weight decay, clipping) is applied from the next step on, and said.
RESUME_FIXED = {"train.batch_size", "train.grad_accum", "train.seed", "train.group_by_length"}


# --- reading run folders (eval, compare, chat, merge and export use these) ---------------------


def partial_dir(out: Path) -> Path:
    return out.resolve().parent / f".{out.name}.partial"


def run_of_partial(folder: Path) -> Path | None:
    """The run folder a partial folder will become (`partial_dir`'s inverse), None for any other folder.

    >>> [run_of_partial(Path(p)) for p in ("runs/.demo.partial", "runs/demo", "runs/.partial", "runs/.demo")]
    [PosixPath('runs/demo'), None, None, None]
    """
    name = folder.name
    if not (name.startswith(".") and name.endswith(".partial")) or len(name) <= len("..partial"):
        return None
    return folder.parent / name[1 : -len(".partial")]


def run_config(run_dir: str | Path):
    """The Config a run was trained with (its config.yaml, settings of other thinktune versions
    left out), or None for a plain adapter folder."""
    path = Path(run_dir) / "config.yaml"
    return config_mod.load_recorded(path) if path.is_file() else None


def run_summary(run_dir: str | Path | None) -> dict:
    """A run's summary.json, or {} (a plain PEFT folder, an unfinished run)."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8")) if run_dir else {}
    except (OSError, ValueError):
        return {}


def base_model_of(run_dir: Path) -> str:
    """The base model a run folder was trained from: its config.yaml, else the adapter config."""
    cfg = run_config(run_dir)
    if cfg is not None:
        return cfg.model.name
    adapter_cfg = Path(run_dir) / "adapter_config.json"
    if not adapter_cfg.exists():
        raise UserError(f"{run_dir} holds no adapter (adapter_config.json); give a thinktune run folder.")
    return json.loads(adapter_cfg.read_text())["base_model_name_or_path"]


def base_model_for(model: str | None, adapter: str | None) -> str:
    """--model if given, else the base the --adapter run folder was trained from."""
    if model:
        return model
    if adapter:
        return base_model_of(Path(adapter))
    raise UserError("Give --model (or --adapter with a thinktune run folder, whose config names the base model).")


def read_metrics(path: Path, up_to_step: int = 1 << 62) -> list[dict]:
    """The records of a metrics log up to a step; a last line cut short by a crash is dropped."""
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("step", 1 << 62) <= up_to_step:
                records.append(rec)
    return records


# --- a run in progress ----------------------------------------------------------------------


def run_arguments(cfg, device: str, precision: str, checkpoint_dir: Path) -> dict:
    """The Trainer settings every stage's run takes from train.* the same way (SFT's
    TrainingArguments, RL's GRPOConfig): schedule, clipping, logging, checkpoints, precision, seed."""
    t = cfg.train
    return dict(
        output_dir=str(checkpoint_dir),
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5 takes a ratio in [0, 1) here
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN must stop the run (NonFiniteGuard), not be averaged away
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=None,  # the stage's trainer rotates sealed checkpoints itself (trainer.seal_and_rotate)
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        seed=t.seed,
        data_seed=t.seed,
        report_to=config_mod.trackers(cfg),
        dataloader_num_workers=0,
    )


class Run:
    """The folder, the processes and the listener of one run. Use it as a context manager: entering
    makes (or checks, for --resume) the partial folder; leaving on an error removes it unless it
    holds a checkpoint worth resuming, and reports the failure; `publish` seals the finished run."""

    def __init__(self, cfg, stage: str, resume: bool = False, on_event: OnEvent | None = None):
        self.cfg, self.stage, self.resume = cfg, stage, resume
        self.out = Path(cfg.train.output_dir)
        self.work = partial_dir(self.out)
        self.on_event = on_event or ignore
        self.main = os.environ.get("RANK", "0") == "0"  # until PartialState knows the processes
        self.device, self.precision = "", ""
        self.resume_from: str | None = None  # the checkpoint folder this run continues from
        self.records: list[dict] = []  # metrics.jsonl so far
        self.warnings: list[str] = []
        self.lock: tuple[int, Path] | None = None  # held by the main process while the run lives
        self.finished = False  # the adapter is saved in the partial folder: never delete it
        # what the run reads: --out must not be or hold them
        self.sources = (cfg.model.name, cfg.rl.data, cfg.rl.adapter) if stage == "rl" else (cfg.model.name, cfg.data.path)

    # lifecycle

    def __enter__(self) -> Run:
        from .model import pick_device, pick_precision, quantization_config

        try:
            self.device = pick_device(self.cfg.model.device)
            self.precision = pick_precision(self.cfg.model.precision, self.device)
            quantization_config(self.cfg.model.load_in_4bit, self.device, torch.bfloat16)  # QLoRA off CUDA: fail before any write
            self.state = PartialState(cpu=self.device == "cpu")  # one of N processes under torchrun / accelerate launch
            self.main = self.state.is_main_process
            self.resume_from, self.records = self.on_main(self._open)
        except BaseException as e:
            self._unlock()
            self.emit(failure(e))
            raise
        self.emit(Started(self.stage, str(self.out), self.start_step if self.resume_from else None))
        return self

    def __exit__(self, kind, error, tb) -> None:
        try:
            self._exit(error)
        finally:
            self._unlock()  # last: a run waiting for the folder must not see our clean-up half done

    def _exit(self, error) -> None:
        if error is None:
            return
        # Keep the partial run only when it holds a checkpoint worth resuming from.
        last = checkpoints.latest_complete(self.work / "checkpoints")[0] if self.work.is_dir() else None
        if self.main and self.work.is_dir() and last is None and not self.finished:
            shutil.rmtree(self.work, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt) and self.main:
            # Say what a Ctrl-C left: before, the message said "nothing was written" even with a
            # checkpoint to resume from (issue 13).
            kept = (
                f"the last complete checkpoint, {last.name}, is kept in {self.checkpoints}: run the same command with --resume to continue from it."
                if last
                else "no checkpoint had been completed, so nothing of this run was kept."
            )
            stop = Interrupted(f"interrupted; {kept}")
            self.emit(failure(stop))
            raise stop from None
        try:
            if isinstance(error, Exception) and not isinstance(error, UserError):
                # Writers fail in their own words on a full disk (tokenizers: "os error 28", torch.save:
                # "file write failed"); the free space says what happened.
                checkpoints.raise_if_disk_full(self.work.parent, last, error)
        except UserError as full:
            self.emit(failure(full))
            raise
        self.emit(failure(error))

    def publish(self, trainer, tokenizer, summary: dict, text: str, card: str | None = None) -> None:
        """Save the adapter and every output into the partial folder, then rename it into place;
        `card`: the README.md of a stage with its own (else the SFT model card)."""
        summary["warnings"] = self.warnings
        trainer.save_model(str(self.work))  # PEFT adapter folder; FSDP/DeepSpeed gather it; main writes
        if self.main:
            (self.work / "training_args.bin").unlink(missing_ok=True)  # a pickle of TrainingArguments: config.yaml says it
            self.finished = True  # from here on a failure keeps the folder: it holds the trained adapter
            try:
                claim(self.out, "run", self.cfg.train.overwrite, self.sources)  # someone may have put files there meanwhile
            except UserError as e:
                raise UserError(f"{e} The finished run is kept in {self.work}: move it where you want it.") from None
            self._write_outputs(tokenizer, summary, card)
            publish(self.work, self.out, "run")
        self.emit(Finished(str(self.out), summary, text))
        self.state.wait_for_everyone()

    # what the stage reports

    def emit(self, event: Event) -> None:
        if self.main:
            self.on_event(event)

    def say(self, text: str, level: str = "info") -> None:
        """One line for the user; warnings are also kept for summary.json."""
        if level == "warning":
            self.warnings.append(text)
        self.emit(Message(text, level))

    def record(self, rec: dict) -> None:
        """Append one metrics record (main process only writes metrics.jsonl)."""
        self.records.append(rec)
        if self.main:
            with (self.work / "metrics.jsonl").open("a", encoding="utf-8") as f:
                f.write(dumps(rec) + "\n")

    def plot(self) -> None:
        """Redraw the run's curve from the records so far (a long run can be watched): loss_curve.png
        for SFT, reward_curve.png for RL."""
        if self.main:
            draw, name = (reward_curve, "reward_curve.png") if self.stage == "rl" else (loss_curve, "loss_curve.png")
            draw(self.records, self.work / name, title=f"{self.cfg.model.name} + LoRA r={self.cfg.lora.r}" + (" (RL)" if self.stage == "rl" else ""))

    # where the run stands

    @property
    def checkpoints(self) -> Path:
        return self.work / "checkpoints"

    @property
    def start_step(self) -> int:
        """The optimizer step the run starts after (0 fresh; -1 so step 0 is measured too)."""
        return checkpoints.step_of(Path(self.resume_from)) if self.resume_from else -1

    @property
    def resumed_tokens(self) -> int:
        return checkpoints.read_seal(Path(self.resume_from))["tokens_seen"] if self.resume_from else 0

    def on_main(self, fn):
        """Run fn on the main process only and hand its result (or its error) to every process, so
        that all of them stop together instead of the others waiting at a barrier forever."""
        box: list[Any] = [None, None]
        if self.main:
            try:
                box[0] = fn()
            except UserError as e:
                box[1] = str(e)
        box = broadcast_object_list(box) if self.state.num_processes > 1 else box
        if box[1] is not None:
            raise UserError(box[1])
        return box[0]

    def check_space(self, tokenizer, trainable: int, steps: int) -> None:
        """Fail before training when the disk cannot hold the checkpoints of `steps` updates and the adapter."""
        self.on_main(lambda: self._check_space(tokenizer, trainable, steps))

    def sft_steps(self, train_rows: int) -> int:
        """The optimizer steps of SFT on `train_rows` rows (packing may make fewer)."""
        t = self.cfg.train
        return math.ceil(math.ceil(train_rows / (t.batch_size * self.state.num_processes)) / t.grad_accum * t.epochs)

    # inside

    def _open(self) -> tuple[str | None, list[dict]]:
        claim(self.out, "run", self.cfg.train.overwrite, self.sources)  # a clear error for an unusable --out; makes the parent, where the lock lives
        self._lock()  # before anything in the partial folder is touched
        claim(self.out, "run", self.cfg.train.overwrite, self.sources)  # again, under the lock: another run may have finished there meanwhile
        if self.resume:
            return self._reopen()
        last = checkpoints.latest_complete(self.checkpoints)[0] if self.checkpoints.is_dir() else None
        if last is not None and not self.cfg.train.overwrite:
            raise UserError(
                f"An interrupted run of {self.out} is in {self.work} with a complete checkpoint ({last.name}). Run the same command "
                "with --resume to continue it, or with --overwrite to start again from scratch."
            )
        shutil.rmtree(self.work, ignore_errors=True)  # our own leftover with nothing worth keeping
        try:
            self.checkpoints.mkdir(parents=True)
        except OSError as e:
            raise UserError(f"Cannot create the run folder {self.work}: {e.strerror}. Choose a writable --out.") from e
        write_text(self.work / "config.yaml", config_mod.dump(self.cfg))
        return None, []

    def _lock(self) -> None:
        """One run at a time into a folder (issue 13): two would delete each other's partial folder
        and mix their checkpoints and metrics. An advisory lock beside the folder, held while the
        process lives: the system drops it when the process ends, even by kill -9, so a crash
        never leaves a stale lock behind."""
        if fcntl is None:
            return
        path = self.out.resolve().parent / f".{self.out.name}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise UserError(
                    f"Another thinktune run is writing {self.out} right now ({holder}). Wait for it to finish, or choose another --out: "
                    "two runs into one folder would mix their checkpoints and metrics."
                ) from None
            if path.exists() and os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the holder removed the file while we opened it: lock the current one
        os.ftruncate(fd, 0)
        os.write(fd, f"PID {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self.lock = (fd, path)

    def _unlock(self) -> None:
        if self.lock is not None:
            fd, path = self.lock
            path.unlink(missing_ok=True)  # while still held, so no one locks a file about to vanish
            os.close(fd)
            self.lock = None

    def _reopen(self) -> tuple[str, list[dict]]:
        work, cfg = self.work, self.cfg
        if not (work / "config.yaml").is_file():
            done = " It already finished: its run folder is complete." if (self.out / "summary.json").is_file() else ""
            raise UserError(f"Nothing to resume for {self.out}: there is no interrupted run in {work}.{done} Run without --resume to start one.")
        changes = _config_changes(config_mod.load(work / "config.yaml"), cfg)
        fatal = [c for c in changes if not c[0].startswith("train.") or c[0] in RESUME_FIXED]
        if fatal:
            listed = "; ".join(f"{k} was {a!r}, now {b!r}" for k, a, b in fatal)
            raise UserError(
                f"Cannot resume {work} with these settings changed ({listed}): model, data and LoRA settings must fit the checkpoint, and "
                "train.batch_size, grad_accum, seed and group_by_length decide which rows each step trains on. Resume with the same values, "
                "or start again with --overwrite."
            )
        for key, a, b in changes:
            if key not in RESUME_FREE:
                self.say(
                    f"resuming with {key} changed from {a!r} to {b!r}: applied from the next step on, so the result will differ from an uninterrupted run.",
                    "warning",
                )
        last, skipped = checkpoints.latest_complete(self.checkpoints) if self.checkpoints.is_dir() else (None, [])
        for folder, why in skipped:  # housekeeping, not a fact about the model: not kept for the card
            self.emit(Message(f"skipping {folder.name}: {why}. Removing it.", "warning"))
            shutil.rmtree(folder, ignore_errors=True)
        if last is None:
            raise UserError(
                f"Nothing to resume in {work}: it holds no complete checkpoint (train.save_steps={cfg.train.save_steps}). Run again with --overwrite to start from scratch."
            )
        records = read_metrics(work / "metrics.jsonl", checkpoints.step_of(last))
        write_jsonl(work / "metrics.jsonl", records)
        write_text(work / "config.yaml", config_mod.dump(cfg))
        self.say(f"Resuming from {last} (step {checkpoints.step_of(last)}).")
        return str(last), records

    def _write_outputs(self, tokenizer, summary: dict, card: str | None) -> None:
        from .card import model_card

        work, cfg = self.work, self.cfg
        tokenizer.save_pretrained(work)
        write_text(work / "config.yaml", config_mod.dump(cfg))
        write_jsonl(work / "metrics.jsonl", self.records)  # rewritten whole from memory: no line cut short survives
        self.plot()
        write_json(work / "summary.json", summary)
        write_text(work / "README.md", card or model_card(cfg, summary, cfg.train.output_dir))  # replaces PEFT's blank card
        if self.checkpoints.is_dir() and (not cfg.train.keep_checkpoints or not any(self.checkpoints.iterdir())):
            shutil.rmtree(self.checkpoints)  # they exist to resume an unfinished run (issue 11)

    def _check_space(self, tokenizer, trainable: int, steps: int) -> None:
        t = self.cfg.train
        # Each checkpoint holds a copy of the tokenizer: its JSON, plus ~1 MiB for the config and template.
        tok_bytes = len(tokenizer.backend_tokenizer.to_str(pretty=True)) + (1 << 20) if tokenizer.is_fast else 8 << 20
        saves = steps // t.save_steps + 1 if t.save_steps else 0  # the Trainer also saves the last step
        kept = min(saves, (t.save_total_limit or saves) + 1)  # one more exists while the next is sealed
        one = checkpoints.checkpoint_bytes(trainable, tok_bytes)
        need = kept * one + 4 * trainable + (8 << 20)  # + the final adapter, metrics and plot
        checkpoints.check_free_space(self.work, need, f"{kept} checkpoint(s) of ~{one / 2**20:,.1f} MiB and the final adapter")


def _config_changes(old, new) -> list[tuple[str, object, object]]:
    a, b = old.to_dict(), new.to_dict()
    return [(f"{s}.{k}", a[s][k], b[s][k]) for s in b for k in b[s] if a.get(s, {}).get(k) != b[s][k]]
