"""A missing optional dependency names the extra that installs it."""

from __future__ import annotations

import pytest

from conveyor._internal.extras import require
from conveyor.exceptions import MissingExtraError


def test_a_missing_module_names_its_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"Reading Avro needs no_such_module_here, .*pip install 'conveyor\[avro\]'"):
        require("no_such_module_here", "avro", "Reading Avro")


def test_an_installed_module_is_returned() -> None:
    assert require("json", "none", "Tests").dumps([1]) == "[1]"
