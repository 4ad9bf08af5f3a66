"""What the page does, without the page: the library calls behind each tab, on one `Page`
(the workspace, the runs it started, the models chat has loaded). app.py lays the tabs out and
wires these; everything here takes and returns plain values, so it is testable without a browser.
"""

from __future__ import annotations

import html
import json
import shlex
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..errors import UserError
from .form import set_args, to_config
from .jobs import Jobs, train_argv
from .text import tr

BUNDLED = Path(__file__).resolve().parents[3] / "examples" / "data"  # a source checkout's samples (make ui)
DATA_TYPES = (".json", ".jsonl", ".csv", ".parquet")


@dataclass
class Page:
    workspace: Path
    start: Any  # the Config the form starts from (thinktune ui --config)
    jobs: Jobs = field(init=False)
    models: dict = field(default_factory=dict)  # (base, adapter) -> (model, tokenizer): chat loads each once
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.jobs = Jobs(self.workspace)

    def path(self, p: str | Path) -> Path:
        """A path the user typed, relative to the workspace (where the page's runs run)."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else self.workspace / p


def bundled_samples() -> list[str]:
    return sorted(str(p) for p in BUNDLED.glob("medical_o1_*_sample.json"))


def keep_upload(page: Page, uploaded: str) -> str:
    """An uploaded data file, copied into the workspace's data/ (Gradio's copy is temporary)."""
    src = Path(uploaded)
    if src.suffix.lower() not in DATA_TYPES:
        raise UserError(f"Data file {src.name}: thinktune reads {', '.join(DATA_TYPES)} files; convert it first.")
    dest = page.workspace / "data" / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return str(dest.relative_to(page.workspace))


def columns(page: Page, cfg) -> list[str]:
    """The columns of the data's first rows (for the column mapping)."""
    from ..data.load import load_rows

    path = str(page.path(cfg.data.path)) if page.path(cfg.data.path).exists() else cfg.data.path
    rows = load_rows(path, cfg.data.hub_config, cfg.data.split)
    seen: dict[str, None] = {}
    for row in rows[:50]:
        seen.update(dict.fromkeys(row))
    return list(seen)


def with_workspace_paths(page: Page, cfg):
    """The config as the run will read it: data and model paths relative to the workspace."""
    d = cfg.to_dict()
    for section, key in (("data", "path"), ("model", "name")):
        if page.path(d[section][key]).exists():
            d[section][key] = str(page.path(d[section][key]))
    return config_mod.from_dict(d, "the page's settings")


def check_data(page: Page, cfg):
    """`thinktune data check` for the form's settings: the Prepared data and its tokenizer."""
    from ..data import prepare
    from ..model import load_tokenizer, resolve

    cfg = with_workspace_paths(page, cfg)
    tokenizer = load_tokenizer(resolve(cfg.model.name))
    return prepare(cfg.data, tokenizer, cfg.train.seed), tokenizer


def report_markdown(report, lang: str) -> str:
    from ..data.pipeline import report_lines

    head = tr(lang, "report_head").format(template=report.template, median=report.length_median, p90=report.length_p90, longest=report.length_max)
    lines = [f"- {'⚠️ ' if level == 'warning' else ''}{html.escape(text)}" for level, text in report_lines(report)]
    return "\n".join([head, "", *lines])


def length_figure(report, lang: str):
    """Token lengths of every read row, and the max_length line: what a cut at 512 would cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [f.tokens for f in report.rows if f.tokens]
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    ax.hist(lengths, bins=min(40, max(5, len(lengths) // 4)), color="#6b8fd6")
    ax.axvline(report.max_length, color="#d65b5b", linestyle="--", label=f"max_length {report.max_length}")
    ax.set_xlabel(tr(lang, "tokens_per_row"))
    ax.set_ylabel(tr(lang, "rows"))
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


COLOURS = {"prompt": "#e6e6e6", "thinking": "#cfe3ff", "answer": "#c9f2c7", "end": "#ffd08a", "pad": "#f6f6f6"}


def example_html(prepared, tokenizer, index: int, lang: str) -> str:
    """One training example, every token coloured by what happens to it, and a legend with counts."""
    from ..data.encode import eos_id
    from ..data.show import KINDS, token_kinds, token_pieces

    train = prepared.train
    if not train:
        return ""
    index = max(0, min(int(index), len(train) - 1))
    ex = train[index]
    n = len(ex["input_ids"])
    longer = [len(e["input_ids"]) for e in train if len(e["input_ids"]) > n]  # its batch partner under length grouping
    kinds = token_kinds(ex, tokenizer.pad_token_id, eos_id(tokenizer), min(longer) if longer else None)
    counts = {k: sum(1 for _, kind, _ in kinds if kind == k) for k in KINDS}
    legend = " ".join(f'<span class="tt-tok tt-{k}" style="background:{COLOURS[k]}">{html.escape(tr(lang, "kind_" + k))}: {counts[k]}</span>' for k in KINDS)
    spans = []
    for text, kind, trained in token_pieces(tokenizer, kinds):
        title = tr(lang, "trained") if trained else tr(lang, "not_trained")
        shown = html.escape(text) if kind != "pad" else "·"
        spans.append(
            f'<span class="tt-tok tt-{kind} {"tt-trained" if trained else "tt-untrained"}" title="{title}" style="background:{COLOURS[kind]}">{shown}</span>'
        )
    note = tr(lang, "example_note").format(index=index + 1, total=len(train), row=ex["row"], n=n, padded=len(kinds))
    return (
        f'<div id="tt-example"><p>{html.escape(note)}</p><p class="tt-legend">{legend}</p>'
        f'<div class="tt-tokens" style="white-space:pre-wrap;font-family:monospace;line-height:1.6">{"".join(spans)}</div></div>'
    )


def yaml_and_command(cfg, config_path: str) -> tuple[str, str]:
    """The YAML a run of these settings writes and the shell commands that give the same run."""
    text = config_mod.dump(cfg)
    file_cmd = " ".join(train_argv(config_path))
    set_cmd = shlex.join(["thinktune", "train", *set_args(cfg)])
    return text, f"{file_cmd}\n# or, without the file:\n{set_cmd}"


def save_config(page: Page, cfg, config_path: str) -> Path:
    from ..atomic import write_text

    path = page.path(config_path)
    if path.suffix not in (".yaml", ".yml"):
        raise UserError(f"Config file {config_path}: give a .yaml path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, config_mod.dump(cfg))
    return path


def config_path_for(cfg) -> str:
    """Where the page saves the settings of a run: configs/<run folder name>.yaml."""
    return f"configs/{Path(cfg.train.output_dir).name}.yaml"


def start_run(page: Page, values: dict, resume: bool = False):
    """Save the form's settings as configs/<run>.yaml and run `thinktune train --config` on it."""
    cfg = to_config(values)
    config_path = config_path_for(cfg)
    save_config(page, cfg, config_path)
    return page.jobs.start(Path(config_path), Path(cfg.train.output_dir), resume)


# --- runs ----------------------------------------------------------------------------------


def list_runs(page: Page) -> list[dict]:
    """Run folders under the workspace's runs/: finished ones (summary.json) and interrupted ones
    that hold a checkpoint to resume (their partial folder)."""
    from .. import checkpoints
    from ..run import run_of_partial, run_summary

    root = page.workspace / "runs"
    out = []
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        if d.name.startswith("."):
            last = checkpoints.latest_complete(d / "checkpoints")[0] if (d / "checkpoints").is_dir() else None
            target = run_of_partial(d)
            if last is not None and target is not None:
                out.append({"run": str(Path("runs") / target.name), "state": "interrupted", "steps": checkpoints.step_of(last)})
            continue
        s = run_summary(d)
        if s:
            out.append(
                {
                    "run": str(Path("runs") / d.name),
                    "state": "finished",
                    "steps": s.get("optimizer_steps"),
                    "held-out": f"{s['eval_loss_start']:.4f} → {s['eval_loss_end']:.4f}" if s.get("eval_loss_start") is not None else "",
                    "tokens/s": s.get("tokens_per_second"),
                    "seconds": s.get("wall_seconds"),
                }
            )
    return out


def run_details(page: Page, run: str) -> tuple[dict, str | None, str]:
    """A finished run's summary, loss curve and model card."""
    folder = page.path(run)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8")) if (folder / "summary.json").is_file() else {}
    curve = folder / "loss_curve.png"
    card = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else ""
    return summary, str(curve) if curve.is_file() else None, card


def gguf_size(page: Page, run: str, qtype: str) -> int:
    """Expected bytes of the GGUF of a run (its merged model): f16 2 bytes a weight, q8_0 34
    bytes per 32 weights (norms stay f32; a rounding here)."""
    from ..plan import dims_from
    from ..run import base_model_of

    params = dims_from(base_model_of(page.path(run))).params
    return int(params * (2 if qtype == "f16" else 34 / 32))
