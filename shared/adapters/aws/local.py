"""`make aws-local`: the AWS layout on one machine, with no AWS account.

Starts moto's server on a free loopback port, creates the table, queues and secret there with
the names Terraform uses, then runs the API (`python -m api`) on HOST:PORT and one SQS-polling
worker (`QUEUE_BACKEND=sqs python -m worker`) against it, until Ctrl-C. The README's curl
walk-through works against it unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout, create_layout

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "aws-local",
    "AWS_SECRET_ACCESS_KEY": "aws-local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def make_layout(endpoint: str) -> AwsLayout:
    clients = AwsClients(endpoint_url=endpoint)
    try:
        secret = {k: os.environ[k] for k in names.SECRET_KEYS if os.environ.get(k)}
        return await create_layout(clients, secret=secret)
    finally:
        await clients.close()


def layout_env(endpoint: str, layout: AwsLayout) -> dict[str, str]:
    env = {**os.environ, **FAKE_CREDENTIALS, **layout.env(), "AWS_ENDPOINT_URL": endpoint}
    for key in names.SECRET_KEYS:  # they come from the secret, as on Lambda
        env.pop(key, None)
    return env


def main() -> int:
    os.environ.update(FAKE_CREDENTIALS)
    with moto_server() as endpoint:
        layout = asyncio.run(make_layout(endpoint))
        env = layout_env(endpoint, layout)
        print(f"moto server on {endpoint}; table {layout.table}", flush=True)
        api = subprocess.Popen([sys.executable, "-m", "api"], env=env)
        worker = subprocess.Popen([sys.executable, "-m", "worker"], env=env)
        stopped = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        while not stopped.wait(0.5):
            if api.poll() is not None or worker.poll() is not None:
                break
        for child in (worker, api):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        codes = [child.wait(timeout=60) for child in (worker, api)]
    return 0 if stopped.is_set() else max(1, *codes)


if __name__ == "__main__":
    sys.exit(main())
