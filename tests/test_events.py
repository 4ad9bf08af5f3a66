"""Progress events: every kind survives the JSON line a subprocess writes, and an exception
becomes the Failed event the CLI's exit code agrees with."""

import doctest
import errno
import io

import pytest

from thinktune import events
from thinktune.errors import DataError, TrainingDiverged
from thinktune.events import CheckpointSaved, Failed, Finished, HeldOut, JsonLines, Message, Started, Step, failure, from_json, reporting

EXAMPLES = [
    Started("sft", "runs/x", 4),
    Message("Data: 12 rows read, 12 selected.", "info"),
    Message("3 of 10 training rows lose their whole answer", "warning"),
    Step(3, 12, 0.25, loss=2.5, lr=1e-4, grad_norm=0.7, tokens_per_second=120.5, eta_seconds=30.0),
    Step(4, 12, 0.33),
    HeldOut(0, 12, 2.75),
    CheckpointSaved(6, "runs/.x.partial/checkpoints/checkpoint-6"),
    Finished("runs/x", {"train_loss": 2.1, "warnings": ["é, 中文"]}, "Done in 3 s."),
    Failed("Output folder x already holds a run; pass --overwrite.", 2),
]


def test_docstring_examples_run():
    result = doctest.testmod(events)
    assert result.attempted > 0 and result.failed == 0


def test_every_event_round_trips_through_one_json_line():
    stream = io.StringIO()
    write = JsonLines(stream)
    for e in EXAMPLES:
        write(e)
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(EXAMPLES) and [from_json(line) for line in lines] == EXAMPLES
    assert '"event": "heldout"' in lines[5] and "中文" in lines[7]  # readable, not \\u-escaped
    assert set(events.KINDS) == {"started", "message", "step", "heldout", "checkpoint", "finished", "failed"}


@pytest.mark.parametrize(
    "error,code", [(DataError("bad row 3"), 2), (TrainingDiverged("nan at step 5"), 3), (KeyboardInterrupt(), 130), (RuntimeError("boom"), 1)]
)
def test_failure_carries_the_message_and_the_exit_code(error, code):
    f = failure(error)
    assert f.exit_code == code and (str(error) in f.message if str(error) else "interrupted" in f.message)


def test_a_full_disk_is_the_users_to_fix_and_other_os_errors_are_bugs():
    full = failure(OSError(errno.ENOSPC, "No space left on device", "runs/x/adapter_model.safetensors"))
    assert full.exit_code == 2 and full.message.startswith("cannot write runs/x/adapter_model.safetensors: No space left on device.")
    assert failure(OSError(errno.EBADF, "Bad file descriptor")).exit_code == 1


def test_reporting_wraps_a_stage_in_started_and_failed():
    got = []
    with pytest.raises(DataError):
        with reporting(got.append, "eval", "runs/eval"):
            raise DataError("Data file x: row 2 has no 'Question'.")
    assert got == [Started("eval", "runs/eval"), Failed("Data file x: row 2 has no 'Question'.", 2)]
