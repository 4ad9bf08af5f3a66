"""The rewards as TRL calls them, with the real R1 tokenizer: decoding, the end token, one
reading per batch, the logged rates and completions.jsonl."""

import json
from types import SimpleNamespace

import pytest

from thinktune import config
from thinktune.rl.scoring import COMPONENTS, Scorer, append_rows, total, weights

OPTIONS = json.dumps({"A": "Aortic stenosis", "B": "Mitral stenosis"})


@pytest.fixture
def scorer_and_rows(r1_tokenizer, tmp_path):
    rl = config.load(None, ["rl.max_completion_length=64", "rl.overlong_buffer=16", "rl.completions_every=3"]).rl
    path = tmp_path / "completions.jsonl"
    scorer = Scorer(r1_tokenizer, rl, {r1_tokenizer.eos_token_id}, append_rows(path))
    return scorer, path, rl


LIMIT = 64  # rl.max_completion_length below


def ids(tok, text: str, eos: bool) -> list[int]:
    """A finished completion ends on eos; an unfinished one is cut at the limit, as TRL cuts it."""
    out = tok(text, add_special_tokens=False)["input_ids"]
    return out + [tok.eos_token_id] if eos else out[:LIMIT]


def call(scorer, tok, step: int, texts_eos: list[tuple[str, bool]], metrics: dict):
    completion_ids = [ids(tok, t, e) for t, e in texts_eos]
    n = len(completion_ids)
    kw = {
        "opened": [False] * n,
        "options": [OPTIONS] * n,
        "gold": ["B"] * n,
        "id": [str(i) for i in range(n)],
        "trainer_state": SimpleNamespace(global_step=step - 1),
        "log_metric": lambda name, value: metrics.setdefault(name, []).append(value),
    }
    prompts = ["<｜User｜>Q<｜Assistant｜>"] * n
    return [f(prompts=prompts, completions=None, completion_ids=completion_ids, **kw) for f in scorer.funcs()]


def test_each_component_is_its_own_reward_function(scorer_and_rows, r1_tokenizer):
    scorer, path, rl = scorer_and_rows
    metrics: dict = {}
    batch = [
        ("<think>\nmitral\n</think>\n\nThe answer is B.", True),  # right, every check
        ("<think>\nhmm\n</think>\n\nThe answer is A.", True),  # wrong
        ("<think>\nstill thinking" + " and thinking" * 80, False),  # cut at the limit, no answer
        ("<think>\nx\n</think>\n\nNot sure.", True),  # unparsed
    ]
    got = call(scorer, r1_tokenizer, 1, batch, metrics)
    assert [f.__name__ for f in scorer.funcs()] == list(COMPONENTS) == ["correctness", "format", "stated", "length"]
    assert got[0] == [1.0, 0.0, 0.0, 0.0]
    assert got[1] == pytest.approx([1.0, 1.0, 0.0, 1.0])
    assert got[2] == [1.0, 1.0, 0.0, 0.0]
    assert got[3] == [0.0, 0.0, -1.0, 0.0]
    # one reading per batch, each rate logged once
    assert metrics == {"accuracy": [0.25], "format_rate": [0.75], "unparsed_rate": [0.5], "cut_rate": [0.25]}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [1, 1, 1, 1] and rows[0]["completion"] == batch[0][0]  # the end token left out of the text
    assert rows[0]["ended"] and not rows[2]["ended"] and rows[0]["tokens"] == len(ids(r1_tokenizer, batch[0][0], True))
    w = weights(rl)
    assert rows[1]["reward"] == pytest.approx(total(rows[1]["rewards"], w)) == pytest.approx(w[1] * 1.0 + w[2] * 1.0)


def test_completions_are_written_at_step_one_and_every_nth(scorer_and_rows, r1_tokenizer):
    scorer, path, _ = scorer_and_rows
    for step in range(1, 8):
        call(scorer, r1_tokenizer, step, [(f"<think>\n{step}\n</think>\n\nThe answer is B.", True)], {})
    steps = [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert steps == [1, 3, 6]
