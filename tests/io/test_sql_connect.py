"""Connecting to a SQL server that never answers: the step ends with one line, never hangs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.exceptions import DataValidationError
from conveyor.io import sql
from tests.components.test_example_gen import gen


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word, as a half-dead server or a wrong service does."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.mark.timeout(60)
def test_a_postgresql_server_that_never_answers_is_a_one_line_error_with_the_password_masked(
    tmp_path: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "CONNECT_TIMEOUT_SECONDS", 1)
    connection = f"postgresql+psycopg://reader:s3cret@127.0.0.1:{silent_port}/shop"
    with pytest.raises(DataValidationError) as e:
        gen(tmp_path, query="SELECT 1 AS x", connection=connection)
    message = str(e.value)
    assert message.startswith(f"The query on postgresql+psycopg://reader:***@127.0.0.1:{silent_port}/shop failed: ")
    assert "timeout" in message
    assert "s3cret" not in message
    assert "\n" not in message


@pytest.mark.timeout(60)
def test_a_connect_timeout_in_the_url_is_the_one_used(tmp_path: Path, silent_port: int) -> None:
    connection = f"postgresql+psycopg://reader@127.0.0.1:{silent_port}/shop?connect_timeout=1"
    with pytest.raises(DataValidationError, match="timeout"):
        gen(tmp_path, query="SELECT 1 AS x", connection=connection)
