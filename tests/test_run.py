"""A run folder's life (run.py): refusals before anything is written, the partial folder removed
on failure unless it holds a checkpoint, Failed events, and reading run folders back."""

import json
import os

import pytest

from thinktune import checkpoints, config
from thinktune.errors import UserError
from thinktune.events import Failed, Started
from thinktune.run import Run, base_model_for, base_model_of, read_metrics, run_config


def cfg_for(out, **values):
    return config.load(None, values={"train.output_dir": str(out), "model.precision": "fp32", **values})


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_lives(tmp_path):
    out = tmp_path / "r"
    with Run(cfg_for(out), "sft") as first:
        (first.work / "mine.txt").write_text("the first run's")
        with pytest.raises(UserError, match=rf"Another thinktune run is writing {out} right now \(PID {os.getpid()} on .*\)\. Wait for it"):
            with Run(cfg_for(out, **{"train.overwrite": True}), "sft"):
                pass
        assert (first.work / "mine.txt").read_text() == "the first run's"  # its partial folder untouched
    assert not (tmp_path / ".r.lock").exists()  # released, and removed, when the run ends
    with Run(cfg_for(tmp_path / "s"), "sft"):
        pass


def test_a_lock_left_by_a_killed_run_is_not_in_the_way(tmp_path):
    # kill -9 leaves the file; the system released its lock with the process
    (tmp_path / ".r.lock").write_text("PID 999999 on elsewhere")
    with Run(cfg_for(tmp_path / "r"), "sft") as run:
        assert (tmp_path / ".r.lock").read_text().startswith(f"PID {os.getpid()} ")
        assert run.lock is not None


def test_ctrl_c_says_whether_a_checkpoint_can_be_resumed(tmp_path):
    got = []
    with pytest.raises(KeyboardInterrupt, match="no checkpoint had been completed, so nothing of this run was kept"):
        with Run(cfg_for(tmp_path / "a"), "sft", on_event=got.append):
            raise KeyboardInterrupt
    assert got[-1] == Failed("interrupted; no checkpoint had been completed, so nothing of this run was kept.", 130)
    with pytest.raises(KeyboardInterrupt, match=r"checkpoint-2, is kept in .*checkpoints: run the same command with --resume"):
        with Run(cfg_for(tmp_path / "b"), "sft") as run:
            (run.checkpoints / "checkpoint-2").mkdir()
            checkpoints.seal(run.checkpoints / "checkpoint-2", {"step": 2, "tokens_seen": 1})
            raise KeyboardInterrupt


def test_a_failure_removes_the_partial_folder_and_reports_failed(tmp_path):
    got = []
    with pytest.raises(UserError, match="boom"):
        with Run(cfg_for(tmp_path / "r"), "sft", on_event=got.append) as run:
            assert run.work == tmp_path / ".r.partial" and (run.work / "config.yaml").is_file()
            assert config.load(run.work / "config.yaml") == run.cfg
            raise UserError("boom")
    assert got == [Started("sft", str(tmp_path / "r")), Failed("boom", 2)]
    assert list(tmp_path.iterdir()) == []


def test_a_failure_keeps_a_partial_folder_with_a_sealed_checkpoint_and_resume_finds_it(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with Run(cfg_for(tmp_path / "r"), "sft") as run:
            run.record({"step": 1, "loss": 2.0})
            run.record({"step": 2, "loss": 1.5})
            ckpt = run.checkpoints / "checkpoint-1"
            ckpt.mkdir()
            (ckpt / "adapter_model.safetensors").write_bytes(b"weights")
            checkpoints.seal(ckpt, {"step": 1, "tokens_seen": 77})
            raise KeyboardInterrupt
    assert (tmp_path / ".r.partial" / "checkpoints" / "checkpoint-1").is_dir()
    with pytest.raises(UserError, match="with --resume to continue it"):
        Run(cfg_for(tmp_path / "r"), "sft").__enter__()
    got = []
    with Run(cfg_for(tmp_path / "r", **{"train.lr": 1e-3}), "sft", resume=True, on_event=got.append) as run:
        assert (run.resume_from, run.start_step, run.resumed_tokens) == (str(ckpt), 1, 77)
        assert run.records == [{"step": 1, "loss": 2.0}]  # the log cut back to the checkpoint
    assert got[0].text.startswith("resuming with train.lr changed from 0.0003 to 0.001") and got[0].level == "warning"
    assert got[-1] == Started("sft", str(tmp_path / "r"), 1)


def test_resume_refuses_other_model_or_data_settings(tmp_path):
    with pytest.raises(KeyboardInterrupt), Run(cfg_for(tmp_path / "r"), "sft") as run:
        (run.checkpoints / "checkpoint-2").mkdir()
        checkpoints.seal(run.checkpoints / "checkpoint-2", {"step": 2, "tokens_seen": 1})
        raise KeyboardInterrupt
    with pytest.raises(UserError, match=r"lora.r was 16, now 8\): model, data and LoRA settings must fit the checkpoint"):
        Run(cfg_for(tmp_path / "r", **{"lora.r": 8}), "sft", resume=True).__enter__()


def test_read_metrics_drops_a_line_cut_short_and_later_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "eval_loss": 3.0}\n{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.4}\n{"step": 3, "lo')
    assert read_metrics(path) == [{"step": 0, "eval_loss": 3.0}, {"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.4}]
    assert read_metrics(path, up_to_step=1) == [{"step": 0, "eval_loss": 3.0}, {"step": 1, "loss": 2.5}]
    assert read_metrics(tmp_path / "absent.jsonl") == []


def test_the_base_model_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(UserError, match="holds no adapter"):
        base_model_of(run)
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    assert base_model_of(run) == "org/base" and run_config(run) is None
    (run / "config.yaml").write_text(config.dump(cfg_for(tmp_path, **{"model.name": "r1-7b"})))
    assert base_model_of(run) == "r1-7b" and run_config(run).model.name == "r1-7b"
    assert base_model_for("other", str(run)) == "other" and base_model_for(None, str(run)) == "r1-7b"
    with pytest.raises(UserError, match="Give --model"):
        base_model_for(None, None)


def test_a_run_folder_of_another_version_stays_readable(tmp_path):
    """Issue 17: an SFT run recorded rl.use_vllm, since renamed rl.generator; the RL demo could not
    read its base model. A recorded config drops what this version does not know, keeps the rest,
    and still checks it; a config a user gives still refuses the unknown key."""
    run = tmp_path / "run"
    run.mkdir()
    text = config.dump(cfg_for(tmp_path, **{"model.name": "r1-7b", "train.lr": 1e-4}))
    (run / "config.yaml").write_text(text.replace("rl:\n", "rl:\n  use_vllm: auto\n") + "retired:\n  knob: 1\n")
    cfg = run_config(run)
    assert (cfg.model.name, cfg.train.lr, cfg.rl.generator) == ("r1-7b", 1e-4, "auto")
    with pytest.raises(config.ConfigError, match="unknown setting 'rl.use_vllm'"):
        config.load(run / "config.yaml")
    (run / "config.yaml").write_text(text.replace("lr: 0.0001", "lr: -1"))
    with pytest.raises(config.ConfigError, match="train.lr"):
        run_config(run)


def test_metrics_are_standard_json(tmp_path):
    with Run(cfg_for(tmp_path / "r"), "sft") as run:
        run.record({"step": 1, "loss": float("nan"), "grad_norm": float("inf")})
        line = (run.work / "metrics.jsonl").read_text()
    assert line == '{"step": 1, "loss": null, "grad_norm": null}\n'  # Python's NaN / Infinity are not JSON (issue 13)


def test_a_file_put_into_out_during_training_keeps_the_finished_run_aside(tmp_path, tiny_qwen2_dir, short_sample, one_thread):
    """The review of issue 13: a refused publish must not delete the trained adapter with the partial folder."""
    from transformers import TrainerCallback

    from thinktune.sft import train

    out = tmp_path / "r"

    class UserWritesIntoOut(TrainerCallback):
        def on_train_end(self, args, state, control, **kw):
            out.mkdir()
            (out / "notes.txt").write_text("mine")

    sets = [f"model.name={tiny_qwen2_dir}", "model.precision=fp32", f"data.path={short_sample}", "data.limit=6", "data.max_length=160"]
    sets += ["data.val_min_rows=2", "train.batch_size=2", "train.grad_accum=1", "train.epochs=1", "train.save_steps=0", f"train.output_dir={out}"]
    with pytest.raises(UserError, match=rf"did not write \(notes.txt\).* The finished run is kept in {tmp_path / '.r.partial'}: move it"):
        train(config.load(None, sets), callbacks=[UserWritesIntoOut()])
    assert (tmp_path / ".r.partial" / "adapter_model.safetensors").is_file() and sorted(x.name for x in out.iterdir()) == ["notes.txt"]


def test_run_doctests():
    """The examples in run.py (a partial folder's run, ...) hold."""
    import doctest

    from thinktune import run as run_mod

    result = doctest.testmod(run_mod)
    assert result.failed == 0 and result.attempted >= 1
