"""Stage 1, load: read rows from a file or a hub dataset into plain dicts, with clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import DataError

FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
# Long reasoning traces pass csv's default field limit (131,072 characters); 2**31 - 1 is the
# largest limit every platform's C long takes.
CSV_FIELD_LIMIT = 2**31 - 1


def load_rows(path: str, hub_config: str | None = None, split: str = "train") -> list[dict]:
    """Return the rows of a data file (JSON list, JSONL, CSV, Parquet) or of a hub dataset."""
    p = Path(path)
    try:
        rows = _load(p, path, hub_config, split)
    except UnicodeDecodeError as e:
        raise DataError(f"Data file {p} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8.") from None
    if not rows and p.is_file():
        empty = " (the file is empty)" if not p.read_bytes().strip() else ""
        raise DataError(f"Data file {p} holds no rows{empty}; give a file with at least one row.")
    return rows


def _load(p: Path, path: str, hub_config: str | None, split: str) -> list[dict]:
    if p.suffix.lower() in FILE_SUFFIXES or p.exists():
        if not p.is_file():
            raise DataError(f"Data file {p} does not exist. Give a .json, .jsonl, .csv or .parquet file, or a hub dataset name.")
        suffix = p.suffix.lower()
        if suffix == ".jsonl":
            return _read_jsonl(p)
        if suffix == ".json":
            return _read_json(p)
        if suffix == ".csv":
            return _read_csv(p)
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                return pq.read_table(p).to_pylist()
            except pa.ArrowException as e:
                raise DataError(f"Data file {p} is not a readable Parquet file: {e}") from None
        raise DataError(f"Data file {p}: unknown format '{suffix}'; use .json, .jsonl, .csv or .parquet.")
    return _read_hub(path, hub_config, split)


def _read_json(p: Path) -> list[dict]:
    text = p.read_text(encoding="utf-8-sig")
    if not text.strip():
        return []  # load_rows names the empty file
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"Data file {p} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}.") from None
    except RecursionError:  # json recurses once per level: [[[[...]]]] exhausts the stack
        raise DataError(_too_deep(p)) from None
    if isinstance(data, dict):
        # A JSON object holding one list (e.g. {"data": [...]}) is accepted.
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"Data file {p}: expected a JSON list of rows (objects), got {type(data).__name__}.")
    _check_objects(p, data)
    return data


def _read_jsonl(p: Path) -> list[dict]:
    rows = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(
                    f"Data file {p}, line {lineno}: not valid JSON ({e.msg}, column {e.colno}). Each line of a .jsonl file must be one JSON object."
                ) from None
            except RecursionError:  # json recurses once per level: [[[[...]]]] exhausts the stack
                raise DataError(_too_deep(p, lineno)) from None
    _check_objects(p, rows)
    return rows


def _read_csv(p: Path) -> list[dict]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with p.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
        reader = csv.DictReader(f)
        try:
            return list(reader)
        except csv.Error as e:  # DictReader's own line_num lags a row behind its reader's
            raise DataError(f"Data file {p}, line {reader.reader.line_num}: not readable as CSV ({e}); save it as comma-separated UTF-8 text.") from None


def _too_deep(p: Path, lineno: int | None = None) -> str:
    where = f"Data file {p}, line {lineno}," if lineno else f"Data file {p}"
    return (
        f"{where} is nested too deeply to be a data file (lists or objects inside each other, about a thousand levels deep or more). "
        "A data file is a list of rows, each an object of text fields; check that this is the file you meant."
    )


def _check_objects(p: Path, rows: list) -> None:
    bad = [i + 1 for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise DataError(
            f"Data file {p}: {len(bad)} rows are not JSON objects (first rows: {', '.join(map(str, bad[:5]))}); each row must be an object with named fields."
        )


def _read_hub(name: str, hub_config: str | None, split: str) -> list[dict]:
    import datasets

    from ..hub import modelscope_download, modelscope_id

    if (ms := modelscope_id(name)) is not None:
        # The repo's files, then datasets' own reading of a local folder: its README's configs
        # (subsets such as en/zh) and splits work as they do on the Hugging Face hub.
        folder = modelscope_download(ms, "dataset")
        try:
            return datasets.load_dataset(str(folder), hub_config, split=split).to_list()
        except Exception as e:  # noqa: BLE001 - datasets raises many types; the user needs one message
            raise DataError(
                f"ModelScope dataset '{ms}' (in {folder}): config {hub_config!r}, split {split!r} could not be read: {type(e).__name__}: {e}"
            ) from None
    try:
        ds = datasets.load_dataset(name, hub_config, split=split)
    except Exception as e:  # noqa: BLE001 - the hub raises many types; the user needs one message
        raise DataError(
            f"Could not load '{name}' (config {hub_config!r}, split {split!r}) from the Hugging Face hub "
            f"and no local file has that name: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            "Offline, give a local .json/.jsonl/.csv/.parquet file with --data."
        ) from None
    return ds.to_list()
