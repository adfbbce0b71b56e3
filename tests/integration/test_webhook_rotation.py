"""A signing-secret rotation: during the window every delivery carries a signature with the new
and with the previous secret, so receivers on either accept it; after the window only the new.
Real HTTP from the service's WebhookSender to a loopback receiver that verifies with
`standardwebhooks`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.webhooks import tenant_secret
from tests.stubs.webhook_receiver import Delivery, WebhookReceiver
from tests.unit.conftest import T1, Api, chat, running_api

pytestmark = pytest.mark.integration

OLD, NEW = "old-master-secret", "new-master-secret"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    try:
        yield started
    finally:
        started.stop()


def rotation(expires_in: timedelta) -> dict[str, object]:
    return {
        "webhook_signing_secret": NEW,
        "webhook_signing_secret_previous": OLD,
        "webhook_signing_secret_previous_expires_at": datetime.now(UTC) + expires_in,
    }


async def deliver_one(api: Api, receiver: WebhookReceiver) -> Delivery:
    submitted = await api.submit(chat("rotate", webhook_url=receiver.url))
    assert submitted.status_code == 202, submitted.text
    await api.queue.drain()
    for _ in range(250):
        await api.app.state.services.webhooks.deliver_due()
        if receiver.received():
            break
        await asyncio.sleep(0.02)
    (delivery,) = receiver.received()
    assert delivery.payload["data"]["id"] == submitted.json()["id"]
    return delivery


async def test_during_the_rotation_receivers_on_the_old_and_the_new_secret_both_accept(
    receiver: WebhookReceiver,
) -> None:
    async with running_api(**rotation(timedelta(days=7))) as api:
        secrets = (await api.client.get("/v1/webhook-secret", headers=T1)).json()
        new, old = secrets["secret"], secrets["previous_secret"]
        assert (new, old) == (tenant_secret(NEW, "t1"), tenant_secret(OLD, "t1"))
        receiver.secret = old  # a receiver that has not switched yet
        delivery = await deliver_one(api, receiver)

    assert delivery.verified and delivery.status == 200
    assert delivery.verifies_with(new)  # a receiver that switched accepts the same delivery
    assert not delivery.verifies_with(tenant_secret(NEW, "t2"))
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2


async def test_after_the_rotation_window_only_the_new_secret_verifies(
    receiver: WebhookReceiver,
) -> None:
    async with running_api(**rotation(timedelta(seconds=-1))) as api:
        secrets = (await api.client.get("/v1/webhook-secret", headers=T1)).json()
        assert secrets["previous_secret"] is None
        receiver.secret = secrets["secret"]
        delivery = await deliver_one(api, receiver)

    assert delivery.verified and delivery.verifies_with(tenant_secret(NEW, "t1"))
    assert not delivery.verifies_with(tenant_secret(OLD, "t1"))
    assert len(delivery.headers["webhook-signature"].split(" ")) == 1
