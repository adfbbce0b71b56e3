"""Webhook delivery over real HTTP to a loopback receiver that verifies every signature."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.models import (
    Batch,
    BatchCounts,
    BatchStatus,
    ChatRequest,
    Completion,
    Job,
    JobStatus,
    Message,
    WebhookDelivery,
    WebhookState,
    utcnow,
)
from shared.webhooks import (
    Sender,
    WebhookDispatcher,
    WebhookSender,
    WebhookSendError,
    tenant_secret,
)
from tests.fakes import FakeJobStore
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

MASTER = "test-master-secret"
TENANT = "tenant1"
RECEIVER_SECRET = tenant_secret(MASTER, TENANT)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., WebhookReceiver]]:
    started: list[WebhookReceiver] = []

    def make(answers: list[int], tls: ssl.SSLContext | None = None) -> WebhookReceiver:
        receiver = WebhookReceiver(answers, secret=RECEIVER_SECRET).start(tls)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
async def senders() -> AsyncIterator[list[WebhookSender]]:
    made: list[WebhookSender] = []
    yield made
    for sender in made:
        await sender.close()


def finished_job(webhook_url: str) -> Job:
    request = ChatRequest(messages=[Message(role="user", content="hello")])
    return Job(
        tenant=TENANT,
        request=request,
        status=JobStatus.succeeded,
        completed_at=utcnow(),
        result=Completion(content="olleh", provider="fake", model="fake-model"),
        webhook_url=webhook_url,
    )


def dispatcher(
    store: FakeJobStore,
    senders: list[WebhookSender],
    schedule: list[float],
    *,
    allow_private: bool = True,
) -> WebhookDispatcher:
    sender = WebhookSender(timeout_s=5, allow_private=allow_private)
    senders.append(sender)
    checked: Sender = sender
    return WebhookDispatcher(
        store, checked, schedule=schedule, secret_for=lambda t: tenant_secret(MASTER, t)
    )


async def settle(hooks: WebhookDispatcher, store: FakeJobStore, subject_id: str) -> WebhookDelivery:
    """Sweep like a worker until the delivery is no longer pending."""
    for _ in range(250):
        await hooks.deliver_due()
        subject = await store.get_job(subject_id) or await store.get_batch(subject_id)
        assert subject is not None and subject.webhook is not None
        if subject.webhook.state != WebhookState.pending:
            return subject.webhook
        await asyncio.sleep(0.02)
    raise AssertionError(f"webhook of {subject_id} still pending")


async def test_retries_with_a_stable_id_until_delivered(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender]
) -> None:
    receiver = receiver_factory([500, 500, 200])
    store = FakeJobStore()
    job = await store.create_job(finished_job(receiver.url))
    hooks = dispatcher(store, senders, [0, 0.2, 0.2])

    await hooks.schedule(job, "job.succeeded")
    hook = await settle(hooks, store, job.id)

    assert (hook.state, hook.attempts, hook.last_status_code) == ("delivered", 3, 200)
    assert hook.last_error is None
    assert len(receiver.received()) == 3
    assert all(r.verified for r in receiver.received())
    assert receiver.webhook_ids == {hook.id}
    body = receiver.received()[-1].payload
    assert body["type"] == "job.succeeded"
    assert body["data"]["id"] == job.id and body["data"]["result"]["content"] == "olleh"
    assert receiver.received()[-1].headers["content-type"] == "application/json"


async def test_gives_up_when_the_schedule_is_exhausted(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender]
) -> None:
    receiver = receiver_factory([500])
    store = FakeJobStore()
    job = await store.create_job(finished_job(receiver.url))
    hooks = dispatcher(store, senders, [0, 0.2, 0.2])

    await hooks.schedule(job, "job.succeeded")
    hook = await settle(hooks, store, job.id)

    assert (hook.state, hook.attempts, hook.last_status_code) == ("failed", 3, 500)
    assert hook.next_attempt_at is None and "500" in (hook.last_error or "")
    assert len(receiver.received()) == 3 and all(r.verified for r in receiver.received())


async def test_redirects_are_failures_and_are_not_followed(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender]
) -> None:
    receiver = receiver_factory([302])
    store = FakeJobStore()
    job = await store.create_job(finished_job(receiver.url))
    hooks = dispatcher(store, senders, [0, 0.1])

    await hooks.schedule(job)
    hook = await settle(hooks, store, job.id)

    assert (hook.state, hook.attempts, hook.last_status_code) == ("failed", 2, 302)
    assert [r.path for r in receiver.received()] == ["/hook", "/hook"]


async def test_a_fresh_dispatcher_resumes_pending_deliveries(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender]
) -> None:
    receiver = receiver_factory([500, 200])
    store = FakeJobStore()
    job = await store.create_job(finished_job(receiver.url))
    first = dispatcher(store, senders, [0, 0.1, 0.1])
    await first.schedule(job, "job.succeeded")
    assert await first.deliver_due() == 1
    await senders[0].close()  # the first worker dies here

    hook = await settle(dispatcher(store, senders, [0, 0.1, 0.1]), store, job.id)

    assert (hook.state, hook.attempts) == ("delivered", 2)
    assert receiver.webhook_ids == {hook.id} and len(receiver.received()) == 2


async def test_batches_announce_completion(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender]
) -> None:
    receiver = receiver_factory([204])
    store = FakeJobStore()
    batch = Batch(
        tenant=TENANT,
        status=BatchStatus.completed,
        counts=BatchCounts(total=1, succeeded=1),
        completed_at=utcnow(),
        webhook_url=receiver.url,
    )
    await store.create_batch(batch, [])
    hooks = dispatcher(store, senders, [0])

    await hooks.schedule(batch, "batch.completed")
    hook = await settle(hooks, store, batch.id)

    assert (hook.state, hook.last_status_code) == ("delivered", 204)
    (request,) = receiver.received()
    assert request.verified and request.payload["type"] == "batch.completed"
    assert request.payload["data"]["counts"]["succeeded"] == 1


async def test_loopback_is_refused_at_delivery_time_without_allow_private(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender]
) -> None:
    receiver = receiver_factory([200])
    store = FakeJobStore()
    job = await store.create_job(finished_job(receiver.url))
    hooks = dispatcher(store, senders, [0, 0.05], allow_private=False)
    await hooks.schedule(job, "job.succeeded")

    assert await hooks.deliver_due() == 1
    stored = await store.get_job(job.id)
    assert stored is not None and stored.webhook is not None
    assert (stored.webhook.state, stored.webhook.attempts) == ("pending", 1)
    assert "loopback" in (stored.webhook.last_error or "")

    hook = await settle(hooks, store, job.id)
    assert (hook.state, hook.attempts, hook.last_status_code) == ("failed", 2, None)
    assert receiver.received() == []


async def test_run_forever_delivers_and_stops(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender]
) -> None:
    receiver = receiver_factory([200])
    store = FakeJobStore()
    job = await store.create_job(finished_job(receiver.url))
    hooks = dispatcher(store, senders, [0])
    stop = asyncio.Event()
    sweeper = asyncio.create_task(hooks.run_forever(interval_s=0.02, stop=stop))

    await hooks.schedule(job, "job.succeeded")
    for _ in range(250):
        stored = await store.get_job(job.id)
        if stored and stored.webhook and stored.webhook.state == WebhookState.delivered:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(sweeper, 2)

    assert len(receiver.received()) == 1 and receiver.received()[0].verified


def tls_pair(tmp_path: Path, hostname: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `hostname` and a client context trusting it."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


async def test_https_goes_to_the_vetted_address_and_checks_the_certificate_of_the_host(
    receiver_factory: Callable[..., WebhookReceiver], senders: list[WebhookSender], tmp_path: Path
) -> None:
    server_tls, client_tls = tls_pair(tmp_path, "hooks.test")
    sni: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name)

    server_tls.sni_callback = record_sni
    receiver = receiver_factory([200], server_tls)
    port = receiver.base_url.rsplit(":", 1)[1]
    lookups: list[str] = []

    async def resolve(host: str, _port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]  # names under .test do not exist: only this resolver knows them

    sender = WebhookSender(timeout_s=5, allow_private=True, resolve=resolve, verify=client_tls)
    senders.append(sender)
    status = await sender.send(
        f"https://hooks.test:{port}/hook", "msg_1", {"a": 1}, RECEIVER_SECRET
    )

    assert status == 200 and lookups == ["hooks.test"] and sni == ["hooks.test"]
    (request,) = receiver.received()
    assert request.verified and request.headers["host"] == f"hooks.test:{port}"

    with pytest.raises(WebhookSendError, match="certificate"):
        await sender.send(f"https://other.test:{port}/hook", "msg_2", {}, RECEIVER_SECRET)
    assert len(receiver.received()) == 1
