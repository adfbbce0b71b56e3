"""How DynamoDbJobStore stores a job's or batch's JSON in `data`: zlib with a preset dictionary.

DynamoDB bills every write of an item per started KB, and a job is written five or so times.
Plain zlib cannot do much with one record of 1.5 to 2 KB: the field names, the nulls and the enum
values appear once each, and a stream only gets short back-references to what it has already
seen. A preset dictionary (zlib's `zdict`) is that already-seen text: the skeleton of a job and of
a batch record, so a record's structure costs a few bytes and its prompt and answer most of the
rest. A finished job with a 400-character prompt and answer goes from about 1,000 bytes (zlib
alone) to under 600, and its item stays within one write unit.

A stream made with a dictionary says so in its header (the FDICT bit) and names it by its
Adler-32 checksum, so reading needs no marker of our own: records compressed without one (before
this dictionary) and records stored as JSON text (before compression) are read as they are.
DICTIONARY must never change once records were written with it; a better dictionary is a new
constant added to DICTIONARIES, with PACKING pointing at it.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

# The strings of a job's and a batch's JSON (shared.models.Job, Batch, as model_dump_json writes
# them), the commonest last: zlib codes near matches in fewer bits. Never edit: see above.
DICTIONARY: Final = (
    b'{"id":"batch_","object":"batch","status":"in_progress","status":"cancelling",'
    b'"status":"completed","created_at":"","completed_at":null,"metadata":{},'
    b'"webhook":null,"tenant":"","webhook_url":null,"idempotency_key":null,'
    b'"request_hash":null,"key_id":null,"priority":"normal"}'
    b'"error":{"code":"provider_error","message":""},"error":{"code":"timeout","message":""},'
    b'{"role":"system","content":""},{"role":"assistant","content":""},'
    b'"response_format":{"type":"json_object"},"priority":"high","priority":"low",'
    b'"provider":"openrouter","fallback":true,"cached":true,"coalesced":true,"status":"failed",'
    b'"status":"cancelled","state":"failed","key_hold":{"month":"","tokens":null,"slot":false,'
    b'"per_minute":false},"key_id":"key_","lease_until":"","not_before":"","state":"pending",'
    b'"webhook":{"id":"msg_","state":"delivered","attempts":1,"last_status_code":200,'
    b'"last_error":null,"next_attempt_at":null},"webhook_url":"https://",'
    b'{"id":"job_","status":"queued","status":"running","status":"succeeded","created_at":"",'
    b'"updated_at":"","completed_at":"","cached":false,"coalesced":false,"batch_id":null,'
    b'"batch_id":"batch_","custom_id":null,"custom_id":"","metadata":{},"attempts":0,'
    b'"attempts":1,"result":null,"result":{"content":"","provider":"gemini",'
    b'"model":"gemini-2.5-flash","usage":{"input_tokens":0,"output_tokens":0},"latency_ms":0,'
    b'"fallback":false},"error":null,"webhook":null,"tenant":"","request":{"messages":'
    b'[{"role":"user","content":""}],"model":null,"temperature":null,"max_tokens":null,'
    b'"top_p":null,"stop":null,"seed":null,"response_format":null},"webhook_url":null,'
    b'"cache_key":"","idempotency_key":null,"request_hash":null,"lease_until":null,'
    b'"not_before":null,"retried_at":null,"coalesced_with":null,"key_id":null,'
    b'"priority":"normal","key_hold":null,"quota_waited_s":0.0}'
)
DICTIONARIES: Final = {zlib.adler32(DICTIONARY): DICTIONARY}
PACKING: Final = DICTIONARY  # what new records are compressed with
LEVEL = 9
FDICT = 0x20  # zlib header, second byte: a preset dictionary follows (RFC 1950)


def packed(record_json: str) -> dict[str, bytes]:
    """A record's JSON as stored: zlib-compressed with the preset dictionary, as binary."""
    compressor = zlib.compressobj(LEVEL, zdict=PACKING)
    return {"B": compressor.compress(record_json.encode()) + compressor.flush()}


def unpacked(value: dict[str, Any]) -> str:
    """The JSON of a stored record, however it was stored: with a preset dictionary, plain zlib
    (records from before the dictionary), or text (from before compression)."""
    if "B" not in value:
        return str(value["S"])
    data = bytes(value["B"])
    if len(data) < 6 or not data[1] & FDICT:
        return zlib.decompress(data).decode()
    dictionary = DICTIONARIES.get(int.from_bytes(data[2:6], "big"))
    if dictionary is None:
        raise ValueError("record compressed with an unknown dictionary (a newer release?)")
    decompressor = zlib.decompressobj(zdict=dictionary)
    return (decompressor.decompress(data) + decompressor.flush()).decode()
