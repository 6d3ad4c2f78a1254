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
