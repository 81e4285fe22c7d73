"""Importers: kernel logs and ftrace text turned into recordings of ordinary events.

`import_log(path, out)` sniffs the format (`detect.py`), streams the input through the kernel-log importer
(`kernel_log.py`, which hands lines to the Intel, AMD and Arm parsers) or the ftrace importer (`ftrace.py`), and
writes a recording whose footer says how many lines were read, parsed, not understood and suppressed.
"""

from .core import ImportStats
from .detect import FORMATS
from .pipeline import import_log

__all__ = ["FORMATS", "ImportStats", "import_log"]
