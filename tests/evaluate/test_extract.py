"""Answer extraction: a table of real-looking outputs with the exact (letter, how) expected."""

import pytest

from thinktune.evaluate.extract import HOW, extract_choice, split_think

# MedQA test row 1, CMB row hf_cmb_000001, PubMedQA's fixed options.
MEDQA = {
    "A": "Disclose the error to the patient and put it in the operative report",
    "B": "Tell the attending that he cannot fail to disclose this mistake",
    "C": "Report the physician to the ethics committee",
    "D": "Refuse to dictate the operative report",
}
CMB = {"A": "芍药汤", "B": "肥儿丸", "C": "乌梅丸", "D": "白头翁汤"}
PUBMED = {"A": "yes", "B": "no", "C": "maybe"}
# MedMCQA validation row 206 (two options share a text; the others extend it) and a nested pair.
NUMBERS = {"A": "4.6", "B": "4.6", "C": "4.61", "D": "4.62"}
NESTED = {"A": "Cherubism", "B": "Pagets disease and osteopetrosis", "C": "Pagets disease", "D": "Fibrous dysplasia"}

CASES = [
    # (name, full model output, options, expected letter, expected how)
    (
        "think then answer is",
        "<think>\nThe attending asks to hide a complication. Option A is tempting.\n</think>\n\nThe answer is B.",
        MEDQA,
        "B",
        "answer_is",
    ),
    ("template opened think", "Okay, the resident cut a tendon... A? No.\n</think>\nThe answer is (B)", MEDQA, "B", "answer_is"),
    ("answer inside think ignored", "<think>So the answer is A.</think>\nAnswer: C", MEDQA, "C", "answer_is"),
    ("change of mind is ambiguous", "</think>\nAt first the answer is A, but on reflection the correct answer is D.", MEDQA, None, "ambiguous"),
    ("restated answer is one answer", "</think>\nThe answer is D. To repeat: the correct answer is D.", MEDQA, "D", "answer_is"),
    # issue 14: the base demo model's output that "the last explicit answer wins" credited
    ("listed options are ambiguous", "</think>\nThe correct answer is: B… C… D. Cross-linking of DNA", MEDQA, None, "ambiguous"),
    ("options joined by and", "</think>\nThe answer is B, C and D.", MEDQA, None, "ambiguous"),
    ("options joined by or", "</think>\nThe answer is B or C.", MEDQA, None, "ambiguous"),
    ("a sentence after the letter is not a list", "</think>\nThe answer is B. A surgeon must disclose.", MEDQA, "B", "answer_is"),
    ("a clause after the letter is not a list", "</think>\nThe answer is B, which protects the patient (C is too early).", MEDQA, "B", "answer_is"),
    ("answer is colon", "</think>\nThe answer is: B. Tell the attending first.", MEDQA, "B", "answer_is"),
    ("final answer bold", "</think>\n**Final Answer:** **C**", MEDQA, "C", "answer_is"),
    ("final answer colon bold", "</think>\nfinal answer: **C**", MEDQA, "C", "answer_is"),
    ("answer is option", "</think>\nThe best answer is option D.", MEDQA, "D", "answer_is"),
    ("boxed", "</think>\nAnswer: \\boxed{A}", MEDQA, "A", "answer_is"),
    ("lowercase letter", "</think>\nso the answer is b.", MEDQA, "B", "answer_is"),
    (
        "lowercase article is not a letter",
        "</think>\nThe answer is a disclosure: **B. Tell the attending that he cannot fail to disclose this mistake**",
        MEDQA,
        "B",
        "bold",
    ),
    ("answer_is beats a later bold", "</think>\n**C. Report the physician** is too early. The answer is B.\n\n**D**", MEDQA, "B", "answer_is"),
    ("answer_is beats a later letter line", "</think>\nThe answer is B.\n\nA", MEDQA, "B", "answer_is"),
    ("letter not among options", "</think>\nThe answer is F.", MEDQA, None, "unparsed"),
    ("invalid letter skipped, valid one kept", "</think>\nThe answer is E. Among the listed options, the answer is C.", MEDQA, "C", "answer_is"),
    ("hedged, no guess", "</think>\nThe answer is likely B or maybe D.", MEDQA, None, "unparsed"),
    ("never closed think", "<think>\nTendon injury, ethics... the answer is B, I think, but let me check", MEDQA, None, "unparsed"),
    ("empty output", "", MEDQA, None, "unparsed"),
    ("option text only", "</think>\nThe resident should tell the attending that he cannot fail to disclose this mistake.", MEDQA, "B", "option_text"),
    (
        "two option texts ambiguous",
        "</think>\nRefuse to dictate the operative report, or report the physician to the ethics committee.",
        MEDQA,
        None,
        "ambiguous",
    ),
    ("letter line", "</think>\n\nB", MEDQA, "B", "letter_line"),
    ("two letter lines are ambiguous", "</think>\nA.\nHmm.\n(C)", MEDQA, None, "ambiguous"),
    ("lowercase letter line is not read", "</think>\nb", MEDQA, None, "unparsed"),
    ("bold over several options is ambiguous", "</think>\n**A**: would alarm the patient for nothing.\n**D**: the right call.", MEDQA, None, "ambiguous"),
    ("bold with option text", "</think>\nI choose **B. Tell the attending that he cannot fail to disclose this mistake**", MEDQA, "B", "bold"),
    ("no think tags at all", "The answer is A.", MEDQA, "A", "answer_is"),
    ("several think closes", "<think>first</think>\nThe answer is A.\n</think>\nThe answer is C.", MEDQA, "C", "answer_is"),
    ("chinese answer", "<think>\n患儿虫积腹痛，消化不良，应健脾消积。\n</think>\n\n答案是B。", CMB, "B", "chinese"),
    ("chinese change of mind is ambiguous", "</think>\n答案为A……不对，正确答案是（C）", CMB, None, "ambiguous"),
    ("chinese listed options", "</think>\n答案是B、C", CMB, None, "ambiguous"),
    ("chinese colon", "</think>\n综上所述，答案：D", CMB, "D", "chinese"),
    ("chinese beats bold", "</think>\n答案是B。\n\n**C. 乌梅丸**用于蛔厥，不选。", CMB, "B", "chinese"),
    ("chinese option text", "</think>\n治疗虫积腹痛、消化不良，宜首选肥儿丸。", CMB, "B", "option_text"),
    ("chinese never closed", "<think>\n虫积腹痛，答案是B", CMB, None, "unparsed"),
    ("pubmedqa answer is", "</think>\nDouble balloon enteroscopy was safe here. The answer is A.", PUBMED, "A", "answer_is"),
    ("pubmedqa option text", "</think>\nFinal decision: yes", PUBMED, "A", "option_text"),
    ("pubmedqa two texts", "</think>\nyes, although no trial has tested it", PUBMED, None, "ambiguous"),
    ("option text not cut from a number", "</think>\nThe value is 4.62 mmol/L.", NUMBERS, "D", "option_text"),
    ("duplicate option texts ambiguous", "</think>\nThe value is 4.6.", NUMBERS, None, "ambiguous"),
    ("shorter option inside longer", "</think>\nThis is Pagets disease and osteopetrosis.", NESTED, "B", "option_text"),
]


def test_table_is_large_and_uses_every_how():
    assert len(CASES) >= 20
    assert {how for *_, how in CASES} == set(HOW)


@pytest.mark.parametrize("name,text,options,letter,how", CASES, ids=[c[0] for c in CASES])
def test_extract_table(name, text, options, letter, how):
    _, answer, _ = split_think(text)
    assert extract_choice(answer, options) == (letter, how)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<think>\nreasoning\n</think>\n\nThe answer is B.", ("reasoning", "The answer is B.", True)),
        ("reasoning only closed</think>answer", ("reasoning only closed", "answer", True)),
        ("<think>a</think>b</think>c", ("a</think>b", "c", True)),
        ("  <think>\nstill thinking", ("still thinking", "", False)),
        ("The answer is B.", ("", "The answer is B.", False)),
        ("", ("", "", False)),
        ("<think></think>", ("", "", True)),
    ],
)
def test_split_think(text, expected):
    assert split_think(text) == expected


def test_only_answer_text_is_searched():
    # The reasoning names A; extract_choice is given the answer part only and finds nothing there.
    think, answer, closed = split_think("<think>The answer is A.</think>\nI cannot decide.")
    assert (think, closed) == ("The answer is A.", True)
    assert extract_choice(answer, MEDQA) == (None, "unparsed")
