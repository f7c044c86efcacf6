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


def test_building_more_apps_never_wraps_an_endpoint_twice(tmp_path: object) -> None:
    """Route objects are shared by every app in a process: each is wrapped once."""
    import inspect

    from fastapi.routing import APIRoute

    from prolo.app import create_app
    from prolo.settings import Settings
    from prolo.web import is_committing

    apps = [
        create_app(Settings(env="test", database_url=f"sqlite:///{tmp_path}/{n}.db"))
        for n in range(3)
    ]
    for app in apps:
        for route in app.router.routes:
            if not isinstance(route, APIRoute) or inspect.iscoroutinefunction(route.endpoint):
                continue
            call = route.dependant.call
            assert is_committing(call), route.path
            assert not is_committing(call.__wrapped__), f"{route.path} wrapped twice"
