import socket
from typing import Any

import pytest


def test_non_loopback_connections_are_refused() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError, match="loopback only"):
        sock.connect(("93.184.216.34", 443))
    sock.close()


async def test_redis_fixture_is_a_real_server(redis_db: Any) -> None:
    await redis_db.set("k", "v")
    assert await redis_db.get("k") == b"v"
