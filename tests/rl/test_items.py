"""RL items: short-answer files, benchmark-shaped files, the contamination filter, bad input."""

import doctest
import json

import pytest

from thinktune.errors import DataError
from thinktune.rl import items as items_mod
from thinktune.rl.items import drop_contaminated, load_items, normalise


def test_doctests():
    assert doctest.testmod(items_mod).failed == 0


def mcq(question: str, gold: str = "A") -> dict:
    return {"question": question, "options": {"A": "yes", "B": "no"}, "answer_idx": gold}


def write(path, rows):
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_the_filter_removes_questions_of_the_named_benchmark_and_counts_them(tmp_path):
    train = write(tmp_path / "train.json", [mcq("Is aspirin an NSAID?"), mcq("Does insulin lower glucose?"), mcq("Is the liver an organ?", "B")])
    # the same questions as written elsewhere: other case, spacing and punctuation
    bench = write(tmp_path / "bench.json", [mcq("is  aspirin an NSAID"), mcq("IS THE LIVER AN ORGAN??"), mcq("Unrelated?")])
    kept = drop_contaminated(load_items(train), [bench])
    assert [i.question for i in kept.items] == ["Does insulin lower glucose?"]
    assert kept.removed == {bench: 2} and kept.read == 3 and kept.fmt == "mcq"


def test_the_filter_takes_items_already_loaded(tmp_path):
    train = load_items(write(tmp_path / "t.json", [mcq("Q one?"), mcq("Q two?")]))
    kept = drop_contaminated(train, [], {"held-out sample": train.items[1:]})
    assert [i.question for i in kept.items] == ["Q one?"] and kept.removed == {"held-out sample": 1}


def test_a_shared_benchmark_loads_by_name_and_a_seeded_limit_is_a_sample():
    a, b = load_items("medmcqa", limit=20, seed=3), load_items("medmcqa", limit=20, seed=3)
    assert [i.id for i in a.items] == [i.id for i in b.items] and len(a.items) == 20
    assert a.read > 1000 and a.fmt == "mcq" and all(i.gold in i.options for i in a.items)
    assert [i.id for i in load_items("medmcqa", limit=20, seed=4).items] != [i.id for i in a.items]


def test_short_answer_rows_jsonl_and_their_prompt(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text('{"question": "2+2?", "answer": 4}\n\n{"id": "x", "question": "Capital of France?", "answer": "Paris"}\n', encoding="utf-8")
    got = load_items(str(path))
    assert got.fmt == "short" and [(i.id, i.question, i.gold, i.options) for i in got.items] == [
        ("1", "2+2?", "4", {}),
        ("x", "Capital of France?", "Paris", {}),
    ]
    assert got.prompt_text(got.items[0], True) == "2+2?\nEnd your response with 'The answer is X.', where X is your short final answer."
    assert got.prompt_text(got.items[0], False) == "2+2?"


def test_bad_short_answer_rows_are_named_and_nothing_is_loaded(tmp_path):
    path = write(tmp_path / "bad.json", [{"question": "ok?", "answer": "yes"}, {"question": "", "answer": "x"}, {"question": "q?", "answer": " "}])
    with pytest.raises(DataError) as e:
        load_items(path)
    msg = str(e.value)
    assert str(path) in msg and "2 row(s)" in msg and "row 2: field 'question'" in msg and "row 3: field 'answer'" in msg and "Nothing was loaded" in msg


def test_a_broken_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a?", "answer": "b"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not valid JSON"):
        load_items(str(path))


def test_normalise_folds_width_case_and_punctuation():
    assert normalise("Ｔｈｅ  Answer: B！") == normalise("answer b") == "answer b"
