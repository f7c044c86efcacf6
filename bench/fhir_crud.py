"""Benchmark: a FHIR create/read/update/search mix against the running server.

Starts ``prolo serve`` (one worker process) on a scratch database holding a synthetic
clinic, drives it from this process with concurrent HTTP clients, and prints requests
per second per server core (requests divided by the CPU time the server process used,
so the load generator's own CPU does not count), wall-clock requests per second, and
p50/p99 latency per operation and overall. ``GET /health`` (no database work beyond a
``SELECT 1``, no token) is run the same way first as the framework's ceiling.

    python bench/fhir_crud.py                          # SQLite, 4000 requests
    python bench/fhir_crud.py --requests 10000 --concurrency 8
    python bench/fhir_crud.py --database-url postgresql://root@127.0.0.1:5432/bench_fhir

Targets (issue 7): at least 400 requests per second per core and p99 under 50 ms.
Published figures put HAPI FHIR at about 3,000 requests per second on 8 vCPUs, i.e.
about 375 per vCPU; the ratio to both is printed. Every request is a real FHIR
interaction with a bearer token, access checks and an audit row in its transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

TARGET_PER_CORE = 400
HAPI_PER_VCPU = 3000 / 8
MIX = (("read", 0.55), ("search", 0.20), ("update", 0.15), ("create", 0.10))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def prepare(url: str, patients: int) -> str:
    """Migrate, load a synthetic clinic, return an admin token with fhir and write."""
    from prolo.db import create_db_engine, make_sessionmaker
    from prolo.demo import load_demo
    from prolo.migrate import upgrade
    from prolo.security import service
    from prolo.security.models import User
    from prolo.settings import Settings

    engine = create_db_engine(Settings(database_url=url))
    upgrade(engine)
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        from sqlalchemy import select

        admin = session.scalar(select(User).where(User.role == "admin").limit(1))
        if admin is None:
            load_demo(session, patients=patients, seed=11)
            admin = session.scalars(select(User).where(User.role == "admin").limit(1)).one()
        secret, _ = service.create_api_token(
            session=session, user_id=admin.id, name="bench", scopes=("fhir", "write", "read")
        )
    engine.dispose()
    return secret


class Load:
    def __init__(self, client: httpx.AsyncClient, seed: int) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.patients: list[dict[str, Any]] = []
        self.condition_ids: list[str] = []
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)

    async def setup(self) -> None:
        r = await self.client.get("/fhir/Patient", params={"_count": "200"})
        r.raise_for_status()
        self.patients = [e["resource"] for e in r.json()["entry"]]
        r = await self.client.get("/fhir/Condition", params={"_count": "200"})
        self.condition_ids = [e["resource"]["id"] for e in r.json()["entry"]]

    def pick(self) -> str:
        roll, total = self.rng.random(), 0.0
        for name, share in MIX:
            total += share
            if roll < total:
                return name
        return MIX[-1][0]

    async def one(self, kind: str) -> None:
        patient = self.rng.choice(self.patients)
        start = time.perf_counter()
        if kind == "read":
            if self.rng.random() < 0.5:
                r = await self.client.get(f"/fhir/Patient/{patient['id']}")
            else:
                r = await self.client.get(f"/fhir/Condition/{self.rng.choice(self.condition_ids)}")
        elif kind == "search":
            r = await self.client.get(
                "/fhir/Observation", params={"patient": patient["id"], "_count": "10"}
            )
        elif kind == "update":
            body = {k: v for k, v in patient.items() if k != "meta"}
            body["telecom"] = [
                {"system": "phone", "value": f"+1 555 {self.rng.randrange(1000, 9999)}"}
            ]
            r = await self.client.put(f"/fhir/Patient/{patient['id']}", json=body)
        else:
            r = await self.client.post(
                "/fhir/Condition",
                json={
                    "resourceType": "Condition",
                    "subject": {"reference": f"Patient/{patient['id']}"},
                    "code": {
                        "coding": [
                            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}
                        ]
                    },
                },
            )
        self.latency[kind].append(time.perf_counter() - start)
        if r.status_code >= 300:
            self.errors[f"{kind} {r.status_code}"] += 1


async def drive(
    base: str, token: str, requests: int, concurrency: int, pid: int, *, health: bool
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:
        load = Load(client, seed=5)
        await load.setup()
        kinds = [load.pick() for _ in range(requests)]
        for kind in kinds[:100]:  # warm up connections and caches
            await (client.get("/health") if health else load.one(kind))
        load.latency.clear()
        load.errors.clear()
        queue: asyncio.Queue[str] = asyncio.Queue()
        for kind in kinds:
            queue.put_nowait(kind)

        async def worker() -> None:
            while not queue.empty():
                kind = queue.get_nowait()
                if health:
                    start = time.perf_counter()
                    r = await client.get("/health")
                    load.latency["health"].append(time.perf_counter() - start)
                    if r.status_code != 200:
                        load.errors["health"] += 1
                else:
                    await load.one(kind)

        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
    return {
        "cpu": cpu,
        "wall": wall,
        "latency": load.latency,
        "errors": dict(load.errors),
        "n": requests,
    }


def quantile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]
        if len(values) > 1
        else values[0]
    )


def report(name: str, result: dict[str, Any]) -> float:
    per_core = result["n"] / result["cpu"] if result["cpu"] else float("inf")
    every = [x for xs in result["latency"].values() for x in xs]
    wall_rate = result["n"] / result["wall"]
    p50, p99 = quantile(every, 0.50) * 1000, quantile(every, 0.99) * 1000
    print(f"\n{name}: {result['n']} requests in {result['wall']:.2f} s wall", end="")
    print(f", server CPU {result['cpu']:.2f} s")
    print(f"  {per_core:8.0f} requests/s per server core   {wall_rate:8.0f} requests/s wall")
    print(f"  {result['cpu'] / result['n'] * 1000:8.2f} ms of server CPU per request")
    print(f"  p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   overall")
    for kind, values in sorted(result["latency"].items()):
        print(
            f"  {kind:<8} {len(values):6d}   p50 {quantile(values, 0.50) * 1000:6.1f} ms"
            f"   p99 {quantile(values, 0.99) * 1000:6.1f} ms"
        )
    if result["errors"]:
        print(f"  errors: {result['errors']}")
    return per_core


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prolo-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        token = prepare(url, args.patients)
        port = free_port()
        env = {**os.environ, "PROLO_DATABASE_URL": url, "PROLO_LOG_LEVEL": "WARNING"}
        log = (Path(tmp) / "server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "prolo.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
            kind = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
            print(f"prolo FHIR CRUD mix on {kind}, one server process, {args.concurrency} clients")
            print("mix: " + ", ".join(f"{k} {int(s * 100)}%" for k, s in MIX))
            health = asyncio.run(
                drive(base, token, args.requests, args.concurrency, server.pid, health=True)
            )
            ceiling = report("baseline GET /health", health)
            mixed = asyncio.run(
                drive(base, token, args.requests, args.concurrency, server.pid, health=False)
            )
            per_core = report("FHIR mix", mixed)
            every = [x for xs in mixed["latency"].values() for x in xs]
            p99 = quantile(every, 0.99) * 1000
            print(
                f"\nratio to the target of {TARGET_PER_CORE}/core: {per_core / TARGET_PER_CORE:.2f}"
                f"   to HAPI's published ~{HAPI_PER_VCPU:.0f}/vCPU: {per_core / HAPI_PER_VCPU:.2f}"
                f"   to the /health ceiling: {per_core / ceiling:.2f}"
            )
            print(f"p99 {p99:.1f} ms (target < 50 ms): {'met' if p99 < 50 else 'NOT met'}")
            print(
                f"load average at the end: {os.getloadavg()[0]:.2f}"
                " (CPU per request grows when other work shares the cores)"
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
            tail = (Path(tmp) / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
            if any("Traceback" in line or "ERROR" in line for line in tail):
                print("server log:", *tail, sep="\n  ")


if __name__ == "__main__":
    main()
