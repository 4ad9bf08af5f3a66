"""hub.offline: decided at once, before huggingface_hub's retries (real look-ups, no network needed)."""

from huggingface_hub import constants

from thinktune import hub


def test_offline_when_asked_or_when_the_host_does_not_resolve(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://localhost:8443")
    assert hub.offline() is False  # localhost resolves: the hub would be asked
    monkeypatch.setattr(constants, "ENDPOINT", "https://no-such-host.invalid")
    assert hub.offline() is True  # .invalid never resolves (RFC 6761)
    monkeypatch.setattr(constants, "ENDPOINT", "https://localhost:8443")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.offline() is True


# ModelScope (issue 15): offline, through the real modelscope package and its cache layout
# ({cache}/{models|datasets}/{owner}--{name}/snapshots/{revision}/), filled here as a download would.
import importlib.util  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402

from thinktune.errors import DataError, UserError  # noqa: E402


@pytest.fixture
def ms_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "https://no-such-host.invalid")  # offline, whatever the machine
    return tmp_path / "ms"


def test_a_modelscope_model_resolves_to_its_cached_snapshot_and_loads(ms_cache, tiny_qwen2_dir):
    from thinktune.model import load_tokenizer, resolve
    from thinktune.plan import dims_from

    snapshot = ms_cache / "models" / "deepseek-ai--tiny-qwen2" / "snapshots" / "master"
    shutil.copytree(tiny_qwen2_dir, snapshot)
    assert hub.modelscope_offline() is True
    source = resolve("modelscope:deepseek-ai/tiny-qwen2")
    assert source.path == str(snapshot) and source.name == "modelscope:deepseek-ai/tiny-qwen2"
    tok = load_tokenizer(source)
    assert tok("<think>\n", add_special_tokens=False)["input_ids"] == [151648, 198]  # the R1 tokenizer it carries
    d = dims_from("modelscope:deepseek-ai/tiny-qwen2")
    config = json.loads((snapshot / "config.json").read_text())
    assert (d.hidden, d.layers, d.vocab, d.name) == (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"], "tiny-qwen2")


def test_a_modelscope_dataset_reads_its_subset_and_split(ms_cache, shared_en, shared_zh):
    from thinktune.data.load import load_rows

    snapshot = ms_cache / "datasets" / "FreedomIntelligence--medical-o1-reasoning-SFT" / "snapshots" / "master"
    snapshot.mkdir(parents=True)
    (snapshot / "medical_o1_sft.json").write_text(json.dumps(shared_en[:3]), encoding="utf-8")
    (snapshot / "medical_o1_sft_Chinese.json").write_text(json.dumps(shared_zh[:5], ensure_ascii=False), encoding="utf-8")
    (snapshot / "README.md").write_text(  # the dataset card's configs, as the repo has them
        "---\nconfigs:\n- config_name: en\n  data_files: medical_o1_sft.json\n- config_name: zh\n  data_files: medical_o1_sft_Chinese.json\n---\n"
    )
    name = "modelscope:FreedomIntelligence/medical-o1-reasoning-SFT"
    assert load_rows(name, "zh", "train") == shared_zh[:5]
    assert load_rows(name, "en", "train") == shared_en[:3]
    with pytest.raises(DataError, match="config 'fr', split 'train' could not be read"):
        load_rows(name, "fr", "train")


def test_modelscope_errors_name_the_id_and_what_to_do(ms_cache, monkeypatch):
    from thinktune.model import resolve

    with pytest.raises(UserError) as e:
        resolve("modelscope:deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    msg = str(e.value)
    assert "'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B' is not in the local ModelScope cache, and modelscope.cn cannot be reached" in msg
    assert "https://modelscope.cn/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" in msg and str(ms_cache) in msg
    with pytest.raises(UserError, match="a ModelScope id is owner/name"):
        resolve("modelscope:just-a-name")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "modelscope" else real(n, *a))  # as if not installed
    with pytest.raises(UserError, match=r"needs the modelscope package, which is not installed: pip install modelscope"):
        resolve("modelscope:deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")


def test_train_from_a_modelscope_name_that_is_missing_exits_2_with_nothing_written(ms_cache, tmp_path, capsys):
    from thinktune.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", "modelscope:deepseek-ai/no-such-model", "--data", "examples/data/medical_o1_en_sample.json", "--out", str(out)]) == 2
    assert "ModelScope model 'deepseek-ai/no-such-model'" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".run*"))
