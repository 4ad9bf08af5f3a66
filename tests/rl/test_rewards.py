"""Every reward on hand-written completions: right, wrong, unparsed, ambiguous, unclosed thinking,
missing end token, overlong; multiple-choice and short answers."""

import pytest

from thinktune.rl.rewards import Completion, correctness, format_checks, format_reward, overlong_penalty, short_answer, stated

OPTIONS = {"A": "Aortic stenosis", "B": "Mitral stenosis", "C": "Tricuspid regurgitation", "D": "Pulmonary stenosis"}
THINK = "The murmur is diastolic at the apex, so the mitral valve is narrowed."


def done(answer: str, opened: bool = True, ended: bool = True, tokens: int = 40) -> Completion:
    """A finished completion; with opened=True the prompt opened <think> (the R1 template)."""
    body = f"{THINK}\n</think>\n\n{answer}"
    return Completion(body if opened else f"<think>\n{body}", opened, ended, tokens)


# (completion, correctness, stated, format checks)
CASES = {
    "right": (done("The answer is B."), 1.0, 1.0, (True, True, True)),
    "right, the template did not open <think>": (done("The answer is B.", opened=False), 1.0, 1.0, (True, True, True)),
    "right by option text": (done("It is mitral stenosis."), 1.0, 1.0, (True, True, True)),
    "wrong": (done("The answer is A."), 0.0, 1.0, (True, True, True)),
    "unparsed": (done("Probably a valve problem."), 0.0, 0.0, (True, True, True)),
    "ambiguous": (done("The answer is B or C."), 0.0, 0.0, (True, True, True)),
    "changed its mind": (done("The answer is A. No, the answer is B."), 0.0, 0.0, (True, True, True)),
    "unclosed thinking": (Completion(f"{THINK} The answer is B", True, False, 256), 0.0, 0.0, (False, False, False)),
    "no thinking at all": (Completion("The answer is B.", False, True, 6), 1.0, 1.0, (False, False, True)),
    "missing end token": (done("The answer is B.", ended=False), 1.0, 1.0, (True, True, False)),
    "empty answer": (done(""), 0.0, 0.0, (True, False, True)),
    "two thinking sections": (Completion(f"{THINK}\n</think>\n<think>again</think>\n\nThe answer is B.", True, True, 50), 1.0, 1.0, (False, True, True)),
}


@pytest.mark.parametrize("name", CASES)
def test_correctness_stated_and_format_of_each_case(name):
    c, right, said, checks = CASES[name]
    assert correctness(c, OPTIONS, "B") == right
    assert stated(c, OPTIONS) == said
    assert format_checks(c) == checks
    assert format_reward(c) == pytest.approx(sum(checks) / 3)


def test_the_reasoning_never_answers():
    """The thinking names B; the answer after </think> names nothing: not credited."""
    c = Completion("The answer is B, I think.\n</think>\n\nI am not sure.", True, True, 20)
    assert (correctness(c, OPTIONS, "B"), stated(c, OPTIONS)) == (0.0, 0.0)


@pytest.mark.parametrize(
    "tokens,ended,penalty",
    [
        (10, True, 0.0),  # short
        (192, True, 0.0),  # exactly at limit - buffer
        (193, True, -1 / 64),  # one token into the buffer
        (224, True, -0.5),  # half way through it
        (256, True, -1.0),  # finished on the very last token
        (256, False, -1.0),  # cut at the limit
        (100, False, 0.0),  # stopped early for another reason (a loop cut by the caller): not overlong
    ],
)
def test_overlong_penalty_is_dapos_soft_punishment(tokens, ended, penalty):
    c = Completion("x", False, ended, tokens)
    assert overlong_penalty(c, limit=256, buffer=64) == pytest.approx(penalty)


def test_overlong_penalty_without_a_buffer_only_punishes_a_cut():
    assert overlong_penalty(Completion("x", False, True, 256), 256, 0) == 0.0
    assert overlong_penalty(Completion("x", False, False, 256), 256, 0) == -1.0


@pytest.mark.parametrize(
    "answer,gold,right",
    [
        ("The answer is 12.", "12", 1.0),
        ("The answer is: **Mitral Stenosis**", "mitral stenosis", 1.0),
        ("Final line\nMitral stenosis.", "Mitral stenosis", 1.0),
        ("答案是：二尖瓣狭窄。", "二尖瓣狭窄", 1.0),
        ("The answer is 13.", "12", 0.0),
        ("The answer is 12 or 13.", "12", 0.0),  # not equal after normalisation: no partial credit
        ("", "12", 0.0),
    ],
)
def test_short_answers_are_compared_after_normalisation(answer, gold, right):
    c = done(answer)
    assert correctness(c, {}, gold) == right
    assert stated(c, {}) == (1.0 if answer else 0.0)


def test_short_answer_takes_the_last_cue():
    assert short_answer("The answer is 3. Let me check: the answer is 4.") == "4"
