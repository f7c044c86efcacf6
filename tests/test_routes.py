"""Every route declares an authorization policy."""

from fastapi.testclient import TestClient

from prolo.web import api_routes, route_policy


def test_every_route_declares_a_policy(client: TestClient) -> None:
    routes = api_routes(client.app.routes)  # type: ignore[attr-defined]
    assert len(routes) >= 15, "the route walk found too few routes to be trusted"
    missing = [
        f"{sorted(route.methods)} {route.path}"
        for route in routes
        if route_policy(route.dependant.dependencies) is None
    ]
    assert missing == []
