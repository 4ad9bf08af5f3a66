"""The page's layout, one Blocks per language (server.py mounts both): Data, Plan and settings,
Train, Runs, Compare and chat, Export. Every handler goes through `shown`, so a bad input is the
CLI's own one-paragraph message in the page, never a traceback."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import UserError
from . import page as P
from .form import Field, fields, to_config, values_of
from .talk import CompareJob, heldout_question, side_by_side
from .text import knob_help, tr

DATA_TAB = ("data.path", "data.format", "data.question_field", "data.cot_field", "data.response_field", "data.messages_field")
HEADER = ("model.name",)
MODEL_CHOICES = ["smollm2-demo", "r1-1.5b", "r1-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
CSS = ".tt-error{color:#b00020;font-weight:600} .tt-bar{height:14px;background:#eee;border-radius:7px;overflow:hidden} .tt-bar>div{height:100%;background:#4f7de0}"


def shown(error_outputs: int):
    """Wrap a handler: a UserError becomes its message in the page's error box (the first
    output), the other outputs left as they are."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args):
            try:
                out = fn(*args)
            except UserError as e:
                return (_error(str(e)), *([gr.update()] * (error_outputs - 1)))
            return ("", *out) if isinstance(out, tuple) else ("", out)

        return inner

    return wrap


def _error(text: str) -> str:
    return f'<div class="tt-error">{text}</div>'


class Form:
    """The settings' components by name, in knob order, wherever on the page they sit."""

    def __init__(self, lang: str, start_values: dict):
        self.lang, self.start = lang, start_values
        self.by_name: dict[str, Any] = {}
        self.pending: list[tuple[Any, Any, list, list]] = []

    def on(self, event, fn, extra: list, outputs: list) -> None:
        """`event(fn, extra + every setting, outputs)`, attached once the whole form exists (wire)."""
        self.pending.append((event, fn, extra, outputs))

    def wire(self) -> None:
        for event, fn, extra, outputs in self.pending:
            event(fn, [*extra, *self.inputs], outputs)

    def add(self, f: Field):
        label, info = f.name, knob_help(self.lang, f.name)
        value, elem = self.start[f.name], "tt-" + f.name.replace(".", "-").replace("_", "-")
        c: Any
        if f.kind == "bool":
            c = gr.Checkbox(value=value, label=label, info=info, elem_id=elem)
        elif f.kind == "choice":
            c = gr.Dropdown(choices=list(f.choices or ()), value=value, label=label, info=info, elem_id=elem)
        elif f.name == "model.name":
            c = gr.Dropdown(choices=MODEL_CHOICES, value=value, label=label, info=info, allow_custom_value=True, elem_id=elem)
        else:
            c = gr.Textbox(value=value, label=label, info=info, elem_id=elem)
        self.by_name[f.name] = c
        return c

    @property
    def inputs(self) -> list:
        return [self.by_name[f.name] for f in fields()]

    def values(self, args) -> dict:
        return dict(zip([f.name for f in fields()], args))

    def config(self, args):
        return to_config(self.values(args))


def build(page: P.Page, lang: str, other: str) -> gr.Blocks:
    t = functools.partial(tr, lang)
    form = Form(lang, values_of(page.start))
    by_field = {f.name: f for f in fields()}
    with gr.Blocks(title="thinktune") as demo:
        with gr.Row():
            gr.Markdown(f"## thinktune · {t('tagline')}")
            gr.HTML(f'<a id="tt-lang" href="{other}">{t("other_language")}</a>', elem_id="tt-lang-box")
        form.add(by_field["model.name"])
        error = gr.HTML(elem_id="tt-error")
        with gr.Tab(t("tab_data"), id="data"):
            data_tab(page, lang, form, by_field, error)
        with gr.Tab(t("tab_settings"), id="settings"):
            settings_tab(page, lang, form, by_field, error)
        with gr.Tab(t("tab_train"), id="train"):
            train_tab(page, lang, form, error)
        with gr.Tab(t("tab_runs"), id="runs"):
            runs = runs_tab(page, lang, error)
        with gr.Tab(t("tab_chat"), id="chat"):
            chat_tab(page, lang, error, runs)
        with gr.Tab(t("tab_export"), id="export"):
            export_tab(page, lang, error, runs)
        form.wire()
    return demo


def data_tab(page: P.Page, lang: str, form: Form, by_field: dict, error) -> None:
    t = functools.partial(tr, lang)
    gr.Markdown(t("data_intro"))
    with gr.Row():
        with gr.Column(scale=3):
            form.add(by_field["data.path"])
            bundled = gr.Dropdown(choices=P.bundled_samples(), label=t("bundled"), value=None, elem_id="tt-bundled")
            upload = gr.File(label=t("upload"), file_types=list(P.DATA_TYPES), type="filepath", elem_id="tt-upload")
        with gr.Column(scale=2):
            form.add(by_field["data.format"])
            for name in DATA_TAB[2:]:
                form.add(by_field[name])
    check = gr.Button(t("check_data"), variant="primary", elem_id="tt-check")
    report = gr.Markdown(elem_id="tt-report")
    hist = gr.Plot(label=t("lengths"), elem_id="tt-hist")
    index = gr.Number(value=1, precision=0, label=t("example_number"), minimum=1, elem_id="tt-example-index")
    example = gr.HTML(elem_id="tt-example-box")
    prepared = gr.State(None)
    path_box = form.by_name["data.path"]
    bundled.change(lambda p: p or gr.update(), bundled, path_box)
    upload.upload(shown(2)(lambda f: P.keep_upload(page, f)), upload, [error, path_box])

    @shown(5)
    def run_check(i, *args):
        cfg = form.config(args)
        cols = P.columns(page, cfg)
        prep, tok = P.check_data(page, cfg)
        return (
            P.report_markdown(prep.report, lang),
            P.length_figure(prep.report, lang),
            P.example_html(prep, tok, int(i or 1) - 1, lang),
            (prep, tok),
            gr.update(info=t("columns_found").format(", ".join(cols))),
        )

    form.on(check.click, run_check, [index], [error, report, hist, example, prepared, form.by_name["data.question_field"]])
    index.change(lambda i, s: P.example_html(s[0], s[1], int(i or 1) - 1, lang) if s else "", [index, prepared], example)


def settings_tab(page: P.Page, lang: str, form: Form, by_field: dict, error) -> None:
    t = functools.partial(tr, lang)
    gr.Markdown(t("settings_intro"))
    with gr.Row():
        memory = gr.Number(value=8, label=t("memory"), info=t("memory_help"), elem_id="tt-memory")
        device = gr.Radio(["cuda", "cpu"], value="cuda", label=t("plan_device"), elem_id="tt-plan-device")
        plan_btn = gr.Button(t("plan"), elem_id="tt-plan")
    plan = gr.Textbox(label=t("plan_result"), lines=12, max_lines=30, elem_id="tt-plan-text", buttons=["copy"])
    for section in ("model", "data", "lora", "train"):
        with gr.Accordion(f"{section}: {t('section_' + section)}", open=section == "train"):
            for f in fields():
                if f.name.startswith(section + ".") and f.name not in DATA_TAB + HEADER:
                    form.add(f)
    with gr.Row():
        show = gr.Button(t("show_yaml"), elem_id="tt-show-yaml")
        save = gr.Button(t("save_yaml"), elem_id="tt-save-yaml")
        path = gr.Textbox(label=t("yaml_path"), elem_id="tt-yaml-path")
    yaml_box = gr.Code(language="yaml", label="config.yaml", elem_id="tt-yaml")
    command = gr.Textbox(label=t("command"), lines=3, elem_id="tt-command", buttons=["copy"])

    @shown(2)
    def do_plan(mem, dev, *args):
        from ..plan_text import plan_report

        return plan_report(form.config(args), float(mem or 0), dev)

    @shown(4)
    def do_show(p, *args):
        cfg = form.config(args)
        p = p or P.config_path_for(cfg)
        return (*P.yaml_and_command(cfg, p), p)

    @shown(5)
    def do_save(p, *args):
        cfg = form.config(args)
        p = p or P.config_path_for(cfg)
        saved = P.save_config(page, cfg, p)
        return (*P.yaml_and_command(cfg, p), p, gr.update(value=t("saved").format(saved)))

    form.on(plan_btn.click, do_plan, [memory, device], [error, plan])
    form.on(show.click, do_show, [path], [error, yaml_box, command, path])
    saved_note = gr.Markdown(elem_id="tt-saved")
    form.on(save.click, do_save, [path], [error, yaml_box, command, path, saved_note])


def train_tab(page: P.Page, lang: str, form: Form, error) -> None:
    from .progress import charts, progress_html

    t = functools.partial(tr, lang)
    with gr.Row():
        start = gr.Button(t("start"), variant="primary", elem_id="tt-start")
        stop = gr.Button(t("stop"), variant="stop", elem_id="tt-stop")
        resume = gr.Button(t("resume"), elem_id="tt-resume")
    bar = gr.HTML(progress_html(None, lang), elem_id="tt-progress")
    command = gr.Textbox(label=t("running_command"), elem_id="tt-run-command")
    with gr.Row():
        loss = gr.LinePlot(x="step", y="value", color="series", label=t("chart_loss"), elem_id="tt-chart-loss")
        lr = gr.LinePlot(x="step", y="value", label=t("chart_lr"), elem_id="tt-chart-lr")
        grad = gr.LinePlot(x="step", y="value", label=t("chart_grad"), elem_id="tt-chart-grad")
    console = gr.Textbox(label=t("console"), lines=12, max_lines=12, autoscroll=True, elem_id="tt-console")

    def begin(resume_run: bool):
        @shown(2)
        def go(*args):
            job = P.start_run(page, form.values(args), resume_run)
            return " ".join(job.command)

        return go

    form.on(start.click, begin(False), [], [error, command])
    form.on(resume.click, begin(True), [], [error, command])
    stop.click(lambda: page.jobs.latest.stop() if page.jobs.latest else None)

    def refresh():
        job = page.jobs.latest
        view = job.snapshot() if job else None
        return (progress_html(view, lang), *charts(view, lang), "\n".join(view.lines) if view else "", " ".join(job.command) if job else "")

    gr.Timer(1.0).tick(refresh, None, [bar, loss, lr, grad, console, command])


def runs_tab(page: P.Page, lang: str, error):
    t = functools.partial(tr, lang)
    refresh = gr.Button(t("refresh"), elem_id="tt-runs-refresh")
    table = gr.Dataframe(label=t("runs_found"), interactive=False, elem_id="tt-runs")
    run = gr.Dropdown(label=t("run"), choices=[], allow_custom_value=True, elem_id="tt-run-pick")
    with gr.Row():
        summary = gr.JSON(label="summary.json", elem_id="tt-summary")
        curve = gr.Image(label="loss_curve.png", type="filepath", elem_id="tt-curve")
    card = gr.Markdown(elem_id="tt-card")

    def do_refresh():
        import pandas as pd

        rows = P.list_runs(page)
        finished = [r["run"] for r in rows if r["state"] == "finished"]
        return pd.DataFrame(rows), gr.update(choices=finished, value=finished[-1] if finished else None)

    refresh.click(do_refresh, None, [table, run])
    run.change(lambda r: P.run_details(page, r) if r else ({}, None, ""), run, [summary, curve, card])
    return run


def chat_tab(page: P.Page, lang: str, error, run) -> None:
    t = functools.partial(tr, lang)
    gr.Markdown(t("chat_intro"))
    with gr.Row():
        question = gr.Textbox(label=t("question"), lines=3, scale=4, elem_id="tt-question")
        with gr.Column(scale=1):
            max_new = gr.Number(value=512, precision=0, label=t("max_new_tokens"), elem_id="tt-max-new")
            temperature = gr.Number(value=0.6, label=t("temperature"), info=t("temperature_help"), elem_id="tt-temperature")
    with gr.Row():
        send = gr.Button(t("send"), variant="primary", elem_id="tt-send")
        pick = gr.Button(t("heldout_question"), elem_id="tt-heldout")
        pick_i = gr.Number(value=1, precision=0, label=t("heldout_number"), elem_id="tt-heldout-index")
    with gr.Row():
        base = gr.Chatbot(label=t("base_model"), elem_id="tt-chat-base", height=420)
        tuned = gr.Chatbot(label=t("tuned_model"), elem_id="tt-chat-tuned", height=420)

    def talk(r, q, n, temp):
        try:
            for b, tu in side_by_side(page, r, q, n, temp, lang):
                yield "", b, tu
        except UserError as e:
            yield _error(str(e)), gr.update(), gr.update()

    send.click(talk, [run, question, max_new, temperature], [error, base, tuned])
    pick.click(shown(2)(lambda r, i: heldout_question(page, r, int(i or 1) - 1)), [run, pick_i], [error, question])
    gr.Markdown(f"### {t('bench_compare')}")
    with gr.Row():
        bench = gr.Dropdown(["medqa", "medmcqa", "pubmedqa", "cmb"], value="medqa", label=t("bench"), elem_id="tt-bench")
        limit = gr.Number(value=50, precision=0, label=t("bench_limit"), elem_id="tt-bench-limit")
        go = gr.Button(t("run_compare"), elem_id="tt-run-compare")
    status = gr.Textbox(label=t("console"), lines=6, elem_id="tt-compare-console")
    report = gr.Markdown(elem_id="tt-compare-report")
    jobs: dict = {}

    @shown(2)
    def start_compare(r, b, n, m):
        if not r:
            raise UserError(t("pick_run"))
        jobs["job"] = CompareJob(page, r, b, n, m)
        return " ".join(jobs["job"].command)

    go.click(start_compare, [run, bench, limit, max_new], [error, status])

    def poll():
        job = jobs.get("job")
        if job is None:
            return gr.update(), gr.update()
        done, tail, text = job.status()
        return tail, text if done else gr.update()

    gr.Timer(2.0).tick(poll, None, [status, report])


def export_tab(page: P.Page, lang: str, error, run) -> None:
    t = functools.partial(tr, lang)
    gr.Markdown(t("export_intro"))
    with gr.Row():
        dtype = gr.Radio(["bf16", "fp16", "fp32"], value="bf16", label=t("merge_dtype"), elem_id="tt-merge-dtype")
        merge = gr.Button(t("merge"), elem_id="tt-merge")
    with gr.Row():
        qtype = gr.Radio(["f16", "q8_0"], value="q8_0", label=t("gguf_type"), info=t("gguf_help"), elem_id="tt-gguf-type")
        size = gr.Markdown(elem_id="tt-gguf-size")
        export = gr.Button(t("export_gguf"), elem_id="tt-export")
    result = gr.Markdown(elem_id="tt-export-result")
    modelfile = gr.Code(label="Modelfile", elem_id="tt-modelfile")

    @shown(2)
    def estimate(r, q):
        return t("expected_size").format(P.gguf_size(page, r, q) / 2**20) if r else ""

    @shown(2)
    def do_merge(r, d):
        from ..export import merge as merge_run

        out = merge_run(page.path(r), page.path(f"{r}_merged_{d}"), d, overwrite=True)
        return t("merged").format(out)

    @shown(3)
    def do_export(r, q):
        from ..export import export_gguf, modelfile_path

        out = export_gguf(page.path(r), page.path(f"{r}.{q}.gguf"), q, overwrite=True)
        return t("exported").format(out, out.stat().st_size / 2**20), Path(modelfile_path(out)).read_text(encoding="utf-8")

    for trigger in (run.change, qtype.change):
        trigger(estimate, [run, qtype], [error, size])
    merge.click(do_merge, [run, dtype], [error, result])
    export.click(do_export, [run, qtype], [error, result, modelfile])
