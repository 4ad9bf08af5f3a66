"""The shape of the code, measured (issue 12): the longest functions and signatures, the deepest
nesting, the longest modules, which modules lack a test file of their own, and how many calls
separate `thinktune train` from the line that writes the prompt's -100 labels.

    .venv/bin/python benchmarks/code_shape.py

No model weights are loaded; the call chain is read from a real `thinktune train` run that stops
at its first call of `encode_example` (the real R1 tokenizer, offline).
"""

from __future__ import annotations

import ast
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "thinktune"
BLOCKS = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.AsyncFor, ast.AsyncWith)


def nesting(node: ast.AST, depth: int = 0) -> int:
    """Deepest block nesting inside a function (an `elif` is not a level deeper)."""
    deepest = depth
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        is_elif = isinstance(node, ast.If) and node.orelse == [child] and isinstance(child, ast.If)
        deepest = max(deepest, nesting(child, depth + (isinstance(child, BLOCKS) and not is_elif)))
    return deepest


def functions() -> list[tuple[int, int, int, str]]:
    """(lines, parameters, nesting, where) of every function in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [x for x in (a.vararg, a.kwarg) if x]
                n = len([p for p in params if p.arg not in ("self", "cls")])
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                found.append((node.end_lineno - node.lineno + 1, n, nesting(node), where))
    return found


def untested_modules() -> list[str]:
    """Modules with behaviour (not a package's re-export __init__ or __main__) and no tests/<same path>/test_<name>.py."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if path.name == "__main__.py" or (path.name == "__init__.py" and rel.parent != Path(".")):
            continue
        name = "init" if path.name == "__init__.py" else path.stem
        if not (ROOT / "tests" / rel.parent / f"test_{name}.py").is_file():
            missing.append(str(rel))
    return missing


def calls_to_the_labels() -> str:
    """Run `thinktune train` until it first calls encode_example; the chain of calls from cmd_train."""
    import thinktune.data.pipeline as pipeline
    from thinktune import r1_tokenizer
    from thinktune.cli import main
    from thinktune.model import cache_dir

    chain: list[str] = []

    def stop(*args, **kwargs):
        names = [f.name for f in traceback.extract_stack() if "thinktune" in f.filename]
        chain.extend(names[names.index("cmd_train") :] + ["encode_example"])
        raise KeyboardInterrupt  # ends the run there; nothing is published

    pipeline.encode_example = stop
    tokenizer = r1_tokenizer.cached(cache_dir())
    out = Path("/tmp") / "thinktune-code-shape-run"
    main(["train", "--model", str(tokenizer), "--data", str(ROOT / "examples/data/medical_o1_en_sample.json"), "--out", str(out), "--overwrite"])
    return f"{' -> '.join(chain)}: {len(chain) - 1} calls"


def main() -> None:
    found = functions()
    print("longest functions (lines, parameters, nesting):")
    for f in sorted(found, reverse=True)[:3]:
        print(f"  {f[0]:>3} {f[1]:>3} {f[2]:>3}  {f[3]}")
    print("longest signatures:")
    for f in sorted(found, key=lambda f: -f[1])[:3]:
        print(f"  {f[0]:>3} {f[1]:>3} {f[2]:>3}  {f[3]}")
    print("deepest nesting:", max(f[2] for f in found))
    modules = sorted(((len(p.read_text(encoding="utf-8").splitlines()), str(p.relative_to(ROOT))) for p in PACKAGE.rglob("*.py")), reverse=True)
    print("longest modules:", ", ".join(f"{name} {n}" for n, name in modules[:3]))
    missing = untested_modules()
    total = len([p for p in PACKAGE.rglob("*.py")]) - 3  # __main__ and the two sub-package __init__ re-exports
    print(f"modules with a test file of their own: {total - len(missing)} of {total}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    print("from `thinktune train` to the -100 line:", calls_to_the_labels())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
