"""``prolo portal ...``: load a clinic's licensed questionnaire wording, make a portal link."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

portal_app = typer.Typer(
    help="The patient portal: licensed wording, portal links.", no_args_is_help=True
)


@portal_app.command("load-text")
def load_text(
    instrument: Annotated[str, typer.Option(help="instrument id, e.g. odi")],
    file: Annotated[Path, typer.Argument(help="the clinic's licensed wording (.json/.yaml)")],
    admin_email: Annotated[str, typer.Option(help="the clinic administrator loading it")],
) -> None:
    """Check a licensed-wording file against the questionnaire and store it for the clinic."""
    from sqlalchemy import select

    import prolo.models  # noqa: F401  (every table, so foreign keys resolve)
    from prolo.cli import console, fail, unit_of_work
    from prolo.instruments.texts import LicensedTextError, load_licensed_text
    from prolo.portal import service
    from prolo.security.models import User
    from prolo.security.principal import Principal
    from prolo.security.service import normalize_email

    try:
        texts = load_licensed_text(instrument, file)
    except (LicensedTextError, FileNotFoundError, KeyError) as exc:
        raise fail(str(exc)) from None
    with unit_of_work() as session:
        user = session.scalar(select(User).where(User.email == normalize_email(admin_email)))
        if user is None or user.role != "admin":
            raise fail(f"{admin_email} is not an administrator's account")
        items = {
            link_id: {"text": t.text, "answers": dict(t.answers)} if t.answers else t.text
            for link_id, t in texts.items.items()
        }
        _, complete = service.load_instrument_text(
            session=session,
            principal=Principal(
                user_id=user.id,
                role=user.role,
                clinic_id=user.clinic_id,
                display_name=user.display_name,
            ),
            instrument_id=instrument,
            items=items,
        )
    note = "complete" if complete else "partial: the other items keep their neutral labels"
    console.print(f"loaded the wording of {len(items)} items of {instrument} ({note})")


@portal_app.command("link")
def link(
    patient_id: Annotated[int, typer.Option(help="the patient the link opens the portal for")],
    hours: Annotated[int, typer.Option(min=1, max=24 * 14, help="hours until it expires")] = 72,
) -> None:
    """Print a single-use portal link for a patient (to send by email or text message)."""
    import prolo.models  # noqa: F401  (every table, so foreign keys resolve)
    from prolo.cli import console, fail, load_settings, unit_of_work
    from prolo.patients.models import Patient
    from prolo.portal import links

    settings = load_settings()
    with unit_of_work() as session:
        if session.get(Patient, patient_id) is None:
            raise fail(f"there is no patient {patient_id}")
        token, row = links.issue_link(
            session=session,
            principal=None,
            patient_id=patient_id,
            secret_key=settings.secret_key.get_secret_value(),
            hours=hours,
        )
        expires = row.expires_at
    typer.echo(f"{settings.base_url.rstrip('/')}/portal/link/{token}")  # never wrapped
    console.print(f"single use, valid until {expires:%Y-%m-%d %H:%M} UTC", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``prolo portal``."""
    app.add_typer(portal_app, name="portal")
