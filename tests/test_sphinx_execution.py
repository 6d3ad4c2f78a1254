"""The book's execution extension: kernel messages awaited in short polls, same result and timeout."""

import asyncio
import time
from pathlib import Path
from queue import Empty

import pytest
import yaml

from classsel import sphinx_execution

ROOT = Path(__file__).resolve().parents[1]


class Channel:
    """A channel whose message arrives ``after`` seconds; ``get_msg`` waits like a poll would,
    and records every timeout it was called with."""

    def __init__(self, after: float | None):
        self.arrival = None if after is None else time.monotonic() + after
        self.timeouts = []

    async def get_msg(self, timeout=None):
        self.timeouts.append(timeout)
        now = time.monotonic()
        if self.arrival is not None and now >= self.arrival:
            return {"msg": "reply"}
        wait = (self.arrival - now) if self.arrival is not None else float("inf")
        if timeout is not None and timeout < wait:
            await asyncio.sleep(timeout)
            raise Empty
        await asyncio.sleep(wait)
        return {"msg": "reply"}


@pytest.fixture()
def fast(monkeypatch):
    monkeypatch.setattr(sphinx_execution, "SLICE", 0.05)


def test_a_late_message_is_received_after_several_polls(fast):
    channel = Channel(after=0.3)
    get = sphinx_execution.sliced(Channel.get_msg)
    assert asyncio.run(get(channel, 5.0)) == {"msg": "reply"}
    # polled more than once, never longer than a slice (how many polls depends on the machine's load)
    assert len(channel.timeouts) >= 2 and max(channel.timeouts) <= 0.05


def test_no_message_raises_empty_after_the_whole_timeout(fast):
    channel = Channel(after=None)
    get = sphinx_execution.sliced(Channel.get_msg)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(get(channel, 0.3))
    assert time.monotonic() - start >= 0.29  # the whole timeout, however loaded the machine
    assert len(channel.timeouts) >= 2 and all(t <= 0.05 for t in channel.timeouts)


def test_no_timeout_waits_in_slices_until_the_message(fast):
    channel = Channel(after=0.2)
    assert asyncio.run(sphinx_execution.sliced(Channel.get_msg)(channel, None)) == {"msg": "reply"}
    assert len(channel.timeouts) >= 2 and None not in channel.timeouts


def test_installed_once_on_jupyter_clients_asyncio_channel_and_listed_in_the_book_config():
    from jupyter_client.channels import AsyncZMQSocketChannel

    original = AsyncZMQSocketChannel.get_msg
    try:
        sphinx_execution.install()
        wrapped = AsyncZMQSocketChannel.get_msg
        sphinx_execution.install()
        assert wrapped.sliced and AsyncZMQSocketChannel.get_msg is wrapped
    finally:
        AsyncZMQSocketChannel.get_msg = original
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "classsel.sphinx_execution" in config["sphinx"]["extra_extensions"]


class App:
    def __init__(self, parallel, extensions=()):
        self.parallel = parallel
        self.extensions = {name: type("Extension", (), {"parallel_read_safe": None})() for name in extensions}


@pytest.mark.parametrize("given,env,expected", [(1, "3", 3), (1, None, "cores"), (4, "3", 4)])
def test_pages_are_read_in_parallel_unless_the_build_was_given_a_number(given, env, expected, monkeypatch):
    import os

    monkeypatch.delenv("CLASSSEL_BOOK_JOBS", raising=False)
    if env is not None:
        monkeypatch.setenv("CLASSSEL_BOOK_JOBS", env)
    app = App(given)
    sphinx_execution.read_in_parallel(app)
    assert app.parallel == (os.cpu_count() if expected == "cores" else expected)


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_number_of_book_processes_is_named(value, monkeypatch):
    monkeypatch.setenv("CLASSSEL_BOOK_JOBS", value)
    with pytest.raises(ValueError, match=f"CLASSSEL_BOOK_JOBS='{value}' is not valid: expected a number of processes"):
        sphinx_execution.read_in_parallel(App(1))


def test_jupyter_books_silent_extensions_are_declared_safe_to_read_in_parallel():
    app = App(2, [*sphinx_execution.READ_SAFE, "other"])
    sphinx_execution.declare_read_safe(app, None)
    assert [app.extensions[n].parallel_read_safe for n in [*sphinx_execution.READ_SAFE, "other"]] == [True, True, None]


def test_the_smoke_book_read_its_pages_in_parallel_without_a_warning(smoke_book):
    log = (smoke_book / "build.log").read_text()
    # a parallel read reports chunks of pages ("reading sources... [ 50%] a .. b"); a serial one, each page
    assert "doing serial read" not in log
    assert any("reading sources" in line and " .. " in line for line in log.splitlines()), log[-3000:]
