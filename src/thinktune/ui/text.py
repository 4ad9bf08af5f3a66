"""Every word the page shows, in English and Simplified Chinese (tests/ui/test_text.py checks that
no string lacks its translation and that every key the page asks for is here). The settings'
help is the knob's own sentence in English (config.py, also `--help`) and KNOB_ZH in Chinese.

>>> tr("zh", "tab_train"), tr("en", "tab_train")
('训练', 'Train')
>>> knob_help("en", "lora.r") == knob_help("en", "lora.r") and knob_help("zh", "lora.r").startswith("LoRA 秩")
True
"""

from __future__ import annotations

LANGS = ("en", "zh")

STRINGS: dict[str, tuple[str, str]] = {
    "tagline": ("fine-tune reasoning models, and see what changed", "微调推理模型，并看清改变了什么"),
    "other_language": ("中文", "English"),
    "tab_data": ("Data", "数据"),
    "tab_settings": ("Plan and settings", "规划与设置"),
    "tab_train": ("Train", "训练"),
    "tab_runs": ("Runs", "训练记录"),
    "tab_chat": ("Compare and chat", "对比与对话"),
    "tab_export": ("Export", "导出"),
    "data_intro": (
        "Pick a data file (or a hub / `modelscope:` dataset name), map its columns, and check it with the model's own tokenizer: "
        "what would be dropped or cut, and one example coloured by what the loss is computed on.",
        "选择数据文件（或 hub / `modelscope:` 数据集名），对应好列，用模型自己的分词器检查：哪些行会被丢弃或截断，并给出一条按损失计算位置着色的样本。",
    ),
    "bundled": ("Bundled samples (medical-o1-reasoning-SFT)", "自带样例（medical-o1-reasoning-SFT）"),
    "upload": ("Or upload a file (.json, .jsonl, .csv, .parquet)", "或上传文件（.json、.jsonl、.csv、.parquet）"),
    "check_data": ("Check data", "检查数据"),
    "lengths": ("Tokens per row", "每行的 token 数"),
    "tokens_per_row": ("tokens per row", "每行 token 数"),
    "rows": ("rows", "行数"),
    "example_number": ("Training example no.", "训练样本编号"),
    "columns_found": ("Columns in the file: {}", "文件中的列：{}"),
    "report_head": (
        "**Data check** (rendering: {template}; lengths median {median:g}, p90 {p90}, longest {longest} tokens)",
        "**数据检查**（渲染方式：{template}；长度中位数 {median:g}，p90 {p90}，最长 {longest} 个 token）",
    ),
    "kind_prompt": ("prompt, not trained", "提示，不训练"),
    "kind_thinking": ("thinking, trained", "思考，训练"),
    "kind_answer": ("answer, trained", "答案，训练"),
    "kind_end": ("end token, trained", "结束符，训练"),
    "kind_pad": ("padding, masked", "填充，被屏蔽"),
    "trained": ("trained: the loss is computed here", "训练：这里计算损失"),
    "not_trained": ("not trained: no loss here", "不训练：这里不计算损失"),
    "example_note": (
        "Training example {index} of {total} (data row {row}): {n} tokens, shown padded to {padded} as in a batch with the next longer row.",
        "第 {index} / {total} 条训练样本（数据第 {row} 行）：{n} 个 token，按与下一条更长的行同批时补齐到 {padded} 显示。",
    ),
    "settings_intro": (
        "Every setting of a run, with the same one-sentence help and the same checks as `thinktune train --help`. "
        "The memory plan says what fits a budget before anything is loaded.",
        "一次训练的全部设置，说明与检查都和 `thinktune train --help` 相同。显存规划在加载任何权重之前就告诉你什么能放得下。",
    ),
    "memory": ("Memory budget (GiB)", "显存/内存预算（GiB）"),
    "memory_help": ("8 GiB is an RTX 4060.", "8 GiB 相当于一张 RTX 4060。"),
    "plan_device": ("Plan for", "规划的设备"),
    "plan": ("Plan memory", "规划显存"),
    "plan_result": ("Memory plan (thinktune plan)", "显存规划（thinktune plan）"),
    "section_model": ("which model, where, in what precision", "用哪个模型、在哪训练、什么精度"),
    "section_data": ("rows, lengths and the held-out split", "行数、长度与留出集"),
    "section_lora": ("the adapter", "适配器"),
    "section_train": ("the optimisation and the run folder", "优化过程与训练文件夹"),
    "show_yaml": ("Show YAML and command", "显示 YAML 和命令"),
    "save_yaml": ("Save YAML", "保存 YAML"),
    "yaml_path": ("YAML file (in the workspace)", "YAML 文件（在工作目录中）"),
    "command": ("The same run from a shell", "在终端里运行同样的训练"),
    "saved": ("Saved {}", "已保存 {}"),
    "start": ("Start", "开始"),
    "stop": ("Stop (keeps a checkpoint)", "停止（保留检查点）"),
    "resume": ("Resume", "继续训练"),
    "running_command": ("Command of this run", "本次训练的命令"),
    "chart_loss": ("Loss", "损失"),
    "chart_lr": ("Learning rate", "学习率"),
    "chart_grad": ("Gradient norm", "梯度范数"),
    "training_loss": ("training loss", "训练损失"),
    "heldout_loss": ("held-out loss", "留出集损失"),
    "console": ("Console", "控制台输出"),
    "no_run": ("No run started from this page yet.", "本页面还没有启动训练。"),
    "state_starting": ("starting", "启动中"),
    "state_running": ("running", "训练中"),
    "state_stopping": ("stopping after this step", "本步结束后停止"),
    "state_finished": ("finished", "已完成"),
    "state_stopped": ("stopped, resumable", "已停止，可继续"),
    "state_failed": ("failed", "失败"),
    "steps": ("step {} of {}", "第 {} / {} 步"),
    "eta": ("about {} left", "预计还需 {}"),
    "first_loss": ("first loss point {} s after Start", "点击开始后 {} 秒出现第一个损失点"),
    "refresh": ("Refresh", "刷新"),
    "runs_found": ("Run folders under runs/", "runs/ 下的训练文件夹"),
    "run": ("Run", "训练记录"),
    "chat_intro": (
        "Ask the base model and the fine-tune the same question; the thinking is folded. The run is the one picked in the Runs tab.",
        "向基座模型和微调后的模型提同一个问题；思考过程折叠显示。使用“训练记录”页选中的那次训练。",
    ),
    "question": ("Question", "问题"),
    "max_new_tokens": ("Max new tokens", "最多生成 token 数"),
    "temperature": ("Temperature", "温度"),
    "temperature_help": ("0 = greedy; DeepSeek advises 0.6 for R1 models.", "0 = 贪心解码；DeepSeek 建议 R1 模型用 0.6。"),
    "send": ("Ask both", "同时提问"),
    "heldout_question": ("Use a held-out question", "使用留出集问题"),
    "heldout_number": ("Held-out question no.", "留出集问题编号"),
    "base_model": ("Base model", "基座模型"),
    "tuned_model": ("Fine-tuned", "微调后"),
    "thinking": ("Thinking", "思考过程"),
    "no_answer": ("(no answer after the thinking)", "（思考之后没有给出答案）"),
    "pick_run": ("Pick a finished run in the Runs tab first.", "请先在“训练记录”页选择一次已完成的训练。"),
    "type_question": ("Type a question first.", "请先输入问题。"),
    "bench_compare": ("Benchmark: base vs fine-tune (thinktune compare)", "基准测试：基座 vs 微调（thinktune compare）"),
    "bench": ("Benchmark", "基准"),
    "bench_limit": ("Items", "题目数"),
    "run_compare": ("Run compare", "开始对比"),
    "export_intro": (
        "Fold the picked run's adapter into its base (a plain transformers folder), or write a GGUF file and an Ollama Modelfile.",
        "把选中训练的适配器合并进基座模型（普通的 transformers 文件夹），或导出 GGUF 文件和 Ollama Modelfile。",
    ),
    "merge_dtype": ("Merged weights", "合并后的权重格式"),
    "merge": ("Merge", "合并"),
    "gguf_type": ("GGUF type", "GGUF 类型"),
    "gguf_help": ("f16 keeps every weight; q8_0 is about half the size at almost no loss.", "f16 保留全部精度；q8_0 大小约减半，几乎不损失质量。"),
    "export_gguf": ("Export GGUF", "导出 GGUF"),
    "expected_size": ("Expected file size: about {:,.1f} MiB", "预计文件大小：约 {:,.1f} MiB"),
    "merged": ("Merged model written to {}", "合并后的模型已写入 {}"),
    "exported": ("Wrote {} ({:,.1f} MiB)", "已写入 {}（{:,.1f} MiB）"),
}

KNOB_ZH: dict[str, str] = {
    "model.name": "基座模型：hub 上的名字、本地文件夹、.gguf 文件，或别名 smollm2-demo（离线演示小模型）",
    "model.device": "在哪训练：auto 依次尝试 CUDA、Apple MPS、CPU，并告诉你选了哪个",
    "model.precision": "数值格式：auto = 支持的 GPU 用 bf16，否则 fp16（适配器权重保持 fp32）；CPU 只有原生 bf16（AMX/AVX512-BF16）时才用 bf16，否则 fp32",
    "model.attn_implementation": "注意力算子：auto = CUDA 上装了 flash-attn 时用 flash_attention_2，否则用 sdpa；eager 是慢速的参考实现",
    "model.cpu_bf16_weights": "CPU 上用 bf16 训练时：冻结的基座权重以 bf16 存放（内存减半，每步不再转换），LoRA 与优化器保持 fp32；fp32 和 GPU 上不起作用",
    "model.load_in_4bit": "QLoRA：基座权重用 4 位 NF4 存放（bitsandbytes，仅 CUDA），权重显存约为 bf16 的四分之一",
    "data.path": "训练数据：.json/.jsonl/.csv/.parquet 文件或 hub 数据集名",
    "data.hub_config": "hub 数据集的子集，例如 en 或 zh；对本地文件无效",
    "data.split": "读取 hub 数据集的哪个划分；对本地文件无效",
    "data.format": "行的格式：columns（问题、推理、答案三列）或 messages（对话列表）",
    "data.question_field": "问题所在的列（用户的提问）",
    "data.cot_field": "推理过程所在的列，训练在 <think> 之内",
    "data.response_field": "最终答案所在的列，写在 </think> 之后",
    "data.messages_field": "format 为 messages 时，存放对话列表的列",
    "data.system_prompt": "可选的系统提示，放在每个问题前（默认没有）",
    "data.limit": "最多使用这么多行（null = 全部）；行越少训练越快，但学到的也越少",
    "data.sample": "限额内取哪些行：前面的行（first），或按种子随机抽样（random）",
    "data.val_fraction": "留出这一比例的行，用从未训练过的文本衡量损失",
    "data.val_min_rows": "无论比例算出多少，至少留出这么多行",
    "data.max_length": "单条样本的最大 token 数；null = 刚好容纳最长的一行（不超过 max_length_cap）；越长越占显存和时间",
    "data.max_length_cap": "自动 max_length 的上限；超过它的行会被丢弃或截断",
    "data.overflow": "超过 max_length 的行：丢弃（drop，默认，不学半截内容）或截断（truncate，保留开头，可能截掉答案和结束符；截在提示词内的行仍丢弃）",
    "data.train_on_prompt": "是否也训练问题的 token；默认只训练推理、答案和结束符",
    "lora.r": "LoRA 秩，即小的可训练矩阵的大小：越大学得越多，越占显存，小数据上也越容易过拟合",
    "lora.alpha": "LoRA 缩放：更新量乘以 alpha/r；alpha 越大更新越强",
    "lora.dropout": "训练时对 LoRA 输入做 dropout；少量 dropout 可防止小数据过拟合",
    "lora.bias": "是否也训练偏置向量：none（默认）、lora_only 或 all",
    "lora.target_modules": "加 LoRA 适配器的层；再加 k_proj、o_proj 和 MLP（或 all-linear）能学得更多，但更占显存和时间",
    "lora.use_dora": "DoRA：把每个权重的长度和方向分开学习（Liu 等 2024）；低秩时常略好于 LoRA，每步约慢三分之一",
    "lora.use_rslora": "rsLoRA：用 alpha/sqrt(r) 代替 alpha/r 缩放，秩大时更新不会被压小（Kalajdzievski 2023）",
    "lora.init": "适配器的初始值：default 一开始不改变模型（B = 0）；pissa 从每个权重的主奇异方向出发（Meng 等 2024），常常学得更快，保存为原模型上秩 2r 的普通 LoRA",
    "lora.loraplus_lr_ratio": "LoRA+：B 矩阵的学习率是 A 矩阵的这么多倍（Hayou 等 2024 建议 16）；null = 关闭，两者同一学习率",
    "train.output_dir": "训练文件夹：适配器、日志、曲线和总结都写在这里",
    "train.overwrite": "覆盖 output_dir 里已有的训练结果，而不是拒绝",
    "train.batch_size": "每个设备每批的行数；一批可一次算完，也可逐行计算（rows_per_pass）",
    "train.rows_per_pass": "一批中同时计算的行数（须整除 batch_size）；1 = 逐行计算：没有填充、激活内存减半、更新相同；null = CPU 上为 1，GPU 上为 batch_size",
    "train.grad_accum": "累积多少批再更新一次权重：有效批量 = batch_size × grad_accum，不多占显存，但更新次数更少",
    "train.epochs": "遍历训练数据的轮数；轮数越多拟合越好，直到开始过拟合",
    "train.lr": "学习率，即每次更新的步长：太大会发散，太小学不到东西",
    "train.lr_scheduler": "学习率在训练中如何衰减",
    "train.warmup_ratio": "学习率从 0 逐步升高所占的步数比例",
    "train.weight_decay": "每步把适配器权重往 0 拉的力度",
    "train.max_grad_norm": "把梯度范数裁剪到这个值，避免不稳定的更新；0 关闭裁剪",
    "train.group_by_length": "把长度相近的行放在同一批，减少花在填充上的计算",
    "train.logging_steps": "每隔多少次更新记录一次训练损失",
    "train.eval_steps": "每隔多少次更新测一次留出集损失（训练前和结束时也测）；0 = 只在训练前和结束时测",
    "train.save_steps": "每隔多少次更新存一个可续训的检查点（--resume 从最新的完整检查点继续）；0 = 只存最终适配器",
    "train.save_total_limit": "只保留最新的这么多个检查点，删除更早的；null 全部保留",
    "train.keep_checkpoints": "训练完成后仍在训练文件夹里保留检查点（适配器加优化器状态，约为适配器的三倍大）；默认完成后删除，因为它们只用于续训",
    "train.gradient_checkpointing": "反向传播时重算激活（显存少得多，约慢 30%）；null = 只有显存规划说放不下时才打开",
    "train.packing": "把每批的行拼成一条序列，用块对角注意力掩码隔开，完全不算填充（按长度分组后填充本来就很少）",
    "train.head_on_labels": "只在有标签的位置分块计算输出层和损失：损失相同，不为提示和填充位置算 logits",
    "train.report_to": "同时通过 Trainer 自带的集成把曲线发到实验记录工具：none，或 tensorboard（事件文件写在训练文件夹的 tensorboard/ 里）、wandb、trackio、mlflow 中的一个或多个，逗号分隔；各需安装对应的包",
    "train.seed": "数据划分、抽样、打乱顺序和 LoRA 初始化的随机种子",
}


def tr(lang: str, key: str) -> str:
    """The page's text for `key` in `lang` (en or zh)."""
    return STRINGS[key][LANGS.index(lang)]


def knob_help(lang: str, name: str) -> str:
    """A setting's one-sentence help: the knob's own (English) or its Chinese translation."""
    if lang == "zh":
        return KNOB_ZH[name]
    from ..config import knobs

    return next(f.metadata["help"] for n, f, _ in knobs() if n == name)
