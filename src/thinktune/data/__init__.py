"""Data stages: load -> select -> validate -> render -> encode -> cut -> split -> collate."""

from .collate import Collator, PackingCollator
from .encode import IGNORE_INDEX, encode_example
from .pipeline import DataReport, Prepared, prepare

__all__ = ["Collator", "PackingCollator", "IGNORE_INDEX", "encode_example", "DataReport", "Prepared", "prepare"]
