"""Benchmark: Bulk Data export and FHIR import on the synthetic registry.

Generates a synthetic clinic (``prolo.synth``) in a scratch database, then

1. runs a system-level ``$export`` job (the same code the API runs: rows to plain
   dicts, orjson, NDJSON parts in the database) and prints resources per second; as
   the baseline in the same run it also puts every exported resource through the
   ``fhir.resources`` R4B models and back to JSON, the cost a model-per-resource
   export would add;
2. imports the exported NDJSON into a fresh clinic with the importer (raw JSON mapped
   directly) and prints resources per second, then imports it again into another
   fresh clinic with each resource validated by the R4B models first, and prints the
   ratio.

    python bench/fhir_export.py                          # 2,000 patients on SQLite
    python bench/fhir_export.py --patients 10000
    python bench/fhir_export.py --database-url postgresql://root@127.0.0.1:5432/bench_export

Resources the importer does not take in (scores are computed, appointments are booked
through the calendar) are read and counted but not written; the rate counts every
resource read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson
from sqlalchemy import select

from prolo.clinic.models import Clinic
from prolo.db import create_db_engine, make_sessionmaker
from prolo.fhir import bulk
from prolo.fhir.importer import Importer
from prolo.fhir.models import ExportFile
from prolo.migrate import upgrade
from prolo.security import service as security
from prolo.security.principal import Principal
from prolo.settings import Settings
from prolo.synth import SynthConfig, generate


def principal_for(user: object) -> Principal:
    return Principal(
        user_id=user.id,  # type: ignore[attr-defined]
        role=user.role,  # type: ignore[attr-defined]
        clinic_id=user.clinic_id,  # type: ignore[attr-defined]
        display_name="bench",
        via="cli",
    )


def new_admin(factory: object, name: str, *, patients: int = 0) -> Principal:
    with factory() as session, session.begin():  # type: ignore[operator]
        if patients:
            summary = generate(session, SynthConfig(patients=patients, seed=3, clinic_name=name))
            clinic_id = summary.clinic_id
        else:
            clinic = Clinic(name=name, timezone="America/New_York")
            session.add(clinic)
            session.flush()
            clinic_id = clinic.id
        user = security.create_user(
            session=session,
            clinic_id=clinic_id,
            email=f"admin-{clinic_id}@bench.example.org",
            password="bench-password-not-secret-1",  # noqa: S106
            role="admin",
            display_name="Bench admin",
        )
        return principal_for(user)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prolo-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = create_db_engine(Settings(database_url=url))
        upgrade(engine)
        factory = make_sessionmaker(engine)
        started = time.perf_counter()
        admin = new_admin(factory, "Bench registry", patients=args.patients)
        print(
            f"synthetic registry: {args.patients} patients generated in "
            f"{time.perf_counter() - started:.1f} s ({engine.dialect.name})"
        )

        # 1. export
        with factory() as session, session.begin():
            job = bulk.kick_off(
                session,
                admin,
                level="system",
                group_id=None,
                params=[],
                prefer="respond-async",
                request_url="bench",
                base_url="http://bench/fhir",
            )
            job_id = job.id
        started = time.perf_counter()
        bulk.run(factory, job_id)
        export_seconds = time.perf_counter() - started
        out = Path(tmp) / "export"
        out.mkdir()
        lines: list[bytes] = []
        counts: dict[str, int] = {}
        with factory() as session:
            files = session.scalars(select(ExportFile).where(ExportFile.job_id == job_id)).all()
            for part in files:
                target = out / f"{part.resource_type}-{part.part}.ndjson"
                target.write_text(part.content)
                counts[part.resource_type] = counts.get(part.resource_type, 0) + part.count
                lines.extend(part.content.encode().splitlines())
        total = sum(counts.values())
        print(f"\nexport: {total} resources in {export_seconds:.2f} s", end="")
        print(f" = {total / export_seconds:,.0f} resources/s")
        print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))

        from fhir.resources.R4B import get_fhir_model_class

        started = time.perf_counter()
        for line in lines:
            data = orjson.loads(line)
            model = get_fhir_model_class(data["resourceType"]).model_validate(data)
            model.model_dump_json()
        model_seconds = time.perf_counter() - started
        print(
            f"  baseline: the same resources through the R4B models and back: "
            f"{model_seconds:.2f} s = {total / model_seconds:,.0f} resources/s"
        )
        print(f"  model round trip alone costs {model_seconds / export_seconds:.1f}x the export")

        # 2. import, raw and validated (after an untimed warm-up: first-use caches such
        # as the code tables and the knowledge base must not count against one side)
        warm = Path(tmp) / "warm-up"
        warm.mkdir()
        for source in sorted(out.glob("*.ndjson")):
            head = source.read_text().splitlines()[:100]
            (warm / source.name).write_text("\n".join(head) + "\n")
        for validate in (False, True):
            Importer(factory, new_admin(factory, f"Warm-up {validate}"), validate=validate).run(
                warm
            )
        rates = []
        for label, validate in (("raw JSON", False), ("validated by the R4B models", True)):
            principal = new_admin(factory, f"Bench import ({label})")
            importer = Importer(factory, principal, source=f"bench-{validate}", validate=validate)
            started = time.perf_counter()
            report = importer.run(out)
            seconds = time.perf_counter() - started
            rate = report.seen / seconds
            rates.append(rate)
            print(
                f"\nimport ({label}): {report.seen} resources in {seconds:.2f} s"
                f" = {rate:,.0f} resources/s"
            )
            print(
                f"  created {report.created.total()}, not imported (read-only types) "
                f"{report.not_imported.total()}, failed {report.failed.total()}"
            )
            for reason, n in report.reasons.most_common(3):
                print(f"  {n} x {reason}")
        print(f"\nratio raw/validated import: {rates[0] / rates[1]:.2f}")
        engine.dispose()


if __name__ == "__main__":
    main()
