"""The read path builds plain dicts and serialises them with orjson, no pydantic model
per read. These tests prove that shortcut loses nothing: for every served type, the
bytes the server sends hold exactly what the ``fhir.resources`` R4B model of the same
resource would serialise (checked here, in the test, never in the hot path)."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from tests.fhir.conftest import World
from tests.fhir.test_read_search import TYPES


def canonical(data: bytes) -> bytes:
    """JSON with sorted keys, so two serialisers' key orders do not matter."""
    return orjson.dumps(orjson.loads(data), option=orjson.OPT_SORT_KEYS)


def test_read_bytes_equal_the_r4b_model_serialisation(client: TestClient, world: World) -> None:
    for type_name, attribute in TYPES.items():
        row = getattr(world, attribute)
        r = client.get(f"/fhir/{type_name}/{row.id}", headers=world.headers)
        assert r.status_code == 200, (type_name, r.text)
        model = get_fhir_model_class(type_name).model_validate_json(r.content)
        assert canonical(r.content) == canonical(model.model_dump_json().encode()), type_name


def test_searchset_bytes_equal_the_r4b_model_serialisation(
    client: TestClient, world: World
) -> None:
    for type_name, attribute in TYPES.items():
        row = getattr(world, attribute)
        r = client.get(f"/fhir/{type_name}?_id={row.id}&unknown-param=1", headers=world.headers)
        assert r.status_code == 200, (type_name, r.text)
        model = get_fhir_model_class("Bundle").model_validate_json(r.content)
        assert model.total == 1 and len(model.entry) == 2  # the match and the outcome
        assert canonical(r.content) == canonical(model.model_dump_json().encode()), type_name
    r = client.get("/fhir/AuditEvent?_count=3", headers=world.admin_headers)
    assert r.status_code == 200
    model = get_fhir_model_class("Bundle").model_validate_json(r.content)
    assert canonical(r.content) == canonical(model.model_dump_json().encode())
