"""Rows that could not be read: kept aside with their file, row and reason, and counted.

They go to ``<uri>/_quarantine/rows.jsonl``, one JSON object a line (``file``, ``line``,
``reason``, ``text``), written as they come, so a user can ``head`` it and fix the source.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO

MAX_TEXT = 100_000


class Quarantine:
    """A sink for bad rows; the file appears with the first row."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / "rows.jsonl"
        self.count = 0
        self.first: list[str] = []
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def add(self, file: str, line: int | None, reason: str, text: str) -> None:
        record = {"file": file, "line": line, "reason": reason, "text": text[:MAX_TEXT]}
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("w", encoding="utf-8")
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.count += 1
            if len(self.first) < 5:
                where = f"{file}:{line}" if line is not None else file
                self.first.append(f"{where}: {reason}")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
