"""The audit chain's entry format, pure: canonical text, digests, version 1 entries."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from prolo.security import chain

texts = st.one_of(st.none(), st.text(max_size=30))
ints = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
moments = st.datetimes(  # hypothesis takes naive bounds and adds the zone itself
    min_value=dt.datetime(1970, 1, 2),  # noqa: DTZ001
    max_value=dt.datetime(9998, 1, 1),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
fields = st.tuples(ints, texts, ints, st.sampled_from("CRUDE"), st.text(max_size=60),
                   st.text(max_size=40), texts, ints, st.sampled_from(["0", "4", "8", "12"]),
                   texts, texts)  # fmt: skip


@given(moment=moments, values=fields)
def test_the_entry_is_compact_json_with_sorted_keys_and_every_field(
    moment: dt.datetime, values: tuple[object, ...]
) -> None:
    entry = chain.encode(moment, values)
    doc = json.loads(entry)
    assert entry == json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert set(doc) == chain.KEYS and doc["v"] == chain.VERSION
    assert tuple(doc[key] for key, _ in chain.FIELDS) == values
    assert chain.parse_at(doc["at"]) == moment and len(doc["at"]) == 27


def test_the_time_is_utc_whatever_zone_it_is_given_in() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    moment = dt.datetime(2026, 3, 1, 10, 0, 0, tzinfo=paris)
    assert chain.at_text(moment) == "2026-03-01T09:00:00.000000Z"


def test_the_digest_is_sha256_of_the_previous_digest_and_the_entry_bytes() -> None:
    entry = chain.encode(
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC), (None,) * 3 + ("R", "é") + (None,) * 6
    )
    prev = bytes(range(32))
    assert chain.digest(prev, entry) == hashlib.sha256(prev + entry.encode("utf-8")).digest()


@given(moment=moments, values=fields)
def test_a_version_1_entry_holds_only_exactly_as_converted(
    moment: dt.datetime, values: tuple[object, ...]
) -> None:
    prev = hashlib.sha256(b"before").digest()
    stored = chain.v1_digest(prev.hex(), 9, moment, values)
    entry = chain.v1_entry(moment, values, prev.hex())
    assert chain.version_of(entry) == 1
    assert chain.v1_check(entry, 9, prev, stored) is None
    assert chain.v1_check(entry, 10, prev, stored) is not None  # the id is hashed
    assert "link" in (chain.v1_check(entry, 9, bytes(32), stored) or "")
    spaced = entry.replace(",", ", ", 1)  # the same fields in other bytes
    assert "edited" in (chain.v1_check(spaced, 9, prev, stored) or "")
    assert "edited" in (chain.v1_check(entry[:-1], 9, prev, stored) or "")
