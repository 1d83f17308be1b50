"""A CSV file holding only a UTF-8 byte-order mark is empty, as a 0-byte file is.

Editors that save "UTF-8 with BOM" (Excel, Notepad) write those three bytes even for an empty
sheet; such a file beside others failed the whole step with Arrow's "Empty CSV file".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.exceptions import DataValidationError
from tests.io.ingested import gen

BOM = b"\xef\xbb\xbf"
DATA = "id,name\n1,a\n2,b\n"


@pytest.mark.parametrize("content", [BOM, BOM + b"\r\n\r\n"], ids=["bom", "bom-and-blank-lines"])
def test_a_file_of_only_a_byte_order_mark_beside_others_is_skipped_and_named(tmp_path: Path, content: bytes) -> None:
    ex, folder = gen(tmp_path, {"a.csv": DATA, "b.csv": content})
    assert ex.properties["row_counts"] == {"all": 2}
    assert f"{folder / 'b.csv'} is empty (0 bytes or blank lines only); skipped." in ex.properties["warnings"]


def test_a_byte_order_mark_alone_reads_no_rows_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"^ExampleGen read no rows: .*/a\.csv is empty"):
        gen(tmp_path, {"a.csv": BOM})


def test_a_byte_order_mark_before_a_header_is_still_read(tmp_path: Path) -> None:
    ex, _ = gen(tmp_path, {"a.csv": BOM + DATA.encode()})
    assert ex.properties["row_counts"] == {"all": 2}
