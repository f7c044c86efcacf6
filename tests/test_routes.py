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


def test_plain_endpoints_commit_in_their_own_thread(client: TestClient) -> None:
    """Every plain ``def`` endpoint is wrapped by commit_after (see prolo.routers)."""
    import inspect

    from fastapi.routing import APIRoute

    plain = [
        r
        for r in client.app.router.routes  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and not inspect.iscoroutinefunction(r.endpoint)
    ]
    assert plain, "no plain endpoints found"
    unwrapped = [r.path for r in plain if getattr(r.dependant.call, "__wrapped__", None) is None]
    assert unwrapped == []
