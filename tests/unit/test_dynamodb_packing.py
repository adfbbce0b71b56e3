"""dynamodb_packing: records compressed with the preset dictionary, and the earlier formats."""

from __future__ import annotations

import zlib

import pytest

from shared.adapters.store import dynamodb_packing as packing
from shared.models import ChatRequest, Completion, Job, JobStatus, Message, WebhookDelivery

PROSE = (
    "Three decisions are due this week. First, approve the April date for the spring campaign; "
    "marketing owns it and needs a yes by Wednesday. Second, chase the two unsigned contracts "
    "before the quarter closes; legal owns this and should escalate to the account leads."
)


def finished_job() -> Job:
    return Job(
        tenant="acme",
        status=JobStatus.succeeded,
        request=ChatRequest(messages=[Message(role="user", content="Summarise: " + PROSE[::-1])]),
        result=Completion(content=PROSE, provider="gemini", model="gemini-2.5-flash"),
        webhook_url="https://example.com/hook",
        webhook=WebhookDelivery(id="msg_0123456789abcdef0123456789abcdef"),
        cache_key="ab" * 32,
    )


def test_a_record_round_trips() -> None:
    record = finished_job().model_dump_json()
    assert packing.unpacked(packing.packed(record)) == record


def test_the_dictionary_makes_a_job_much_smaller_than_zlib_alone() -> None:
    record = finished_job().model_dump_json().encode()
    with_dictionary = len(packing.packed(record.decode())["B"])
    assert with_dictionary < 0.75 * len(zlib.compress(record, 9))


def test_records_of_earlier_releases_are_read() -> None:
    record = finished_job().model_dump_json()
    assert packing.unpacked({"S": record}) == record  # before compression
    plain = zlib.compress(record.encode())
    assert packing.unpacked({"B": plain}) == record  # before the dictionary


def test_a_record_packed_with_an_unknown_dictionary_is_refused() -> None:
    compressor = zlib.compressobj(9, zdict=b'{"some":"other dictionary"}')
    data = compressor.compress(b'{"id":"job_1"}') + compressor.flush()
    with pytest.raises(ValueError, match="unknown dictionary"):
        packing.unpacked({"B": data})


def test_the_dictionary_never_changes() -> None:
    """Records written with it are unreadable without these exact bytes: a better dictionary is
    a new constant in DICTIONARIES, never an edit of this one."""
    assert zlib.adler32(packing.DICTIONARY) == 2072272511
    assert set(packing.DICTIONARIES) == {zlib.adler32(packing.DICTIONARY)}
