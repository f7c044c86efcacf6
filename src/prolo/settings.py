"""Configuration from the environment, validated once at start-up.

Every setting is read here and nowhere else: the app factory, the CLI and the
worker receive a :class:`Settings` object. Variables are prefixed ``PROLO_``
(``PROLO_DATABASE_URL``, ``PROLO_SECRET_KEY``, ``PROLO_ENV``, ...).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The development secret is public on purpose: it only ever signs embedded-mode
# sessions on a laptop, and production refuses to start with it.
DEVELOPMENT_SECRET = "prolo-development-secret-not-for-production"  # noqa: S105
DEFAULT_DATABASE_URL = "sqlite:///var/prolo.db"


class Settings(BaseSettings):
    """prolo's settings; see ``docs/deploy.md`` for each one."""

    model_config = SettingsConfigDict(env_prefix="PROLO_", extra="ignore", frozen=True)

    env: Literal["development", "test", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    clinic_timezone: str = "America/New_York"
    base_url: str = "http://127.0.0.1:8000"
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    # Database connections each app process keeps; this many requests use the
    # database at once and the rest queue in the event loop (see prolo.web). Keep it
    # below the thread pool's 40 threads, which the requests holding them need.
    # Unset: 10 on PostgreSQL, 1 on SQLite (see request_pool_size).
    db_pool_size: int | None = Field(default=None, ge=1, le=200)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    mail_from: str = "reminders@prolo.invalid"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "PROLO_DATABASE_URL must start with sqlite:/// or postgresql:// "
                f"(got a URL starting {value.split(':', 1)[0]!r})"
            )
        return value

    @field_validator("clinic_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"PROLO_CLINIC_TIMEZONE {value!r} is not an IANA time zone") from None
        return value

    @model_validator(mode="after")
    def _no_default_secret_in_production(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.env == "production" and (secret == DEVELOPMENT_SECRET or len(secret) < 32):
            raise ValueError(
                "PROLO_SECRET_KEY must be set to a random value of at least 32 characters "
                "when PROLO_ENV=production (try: python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def database_kind(self) -> Literal["sqlite", "postgresql"]:
        """Which database engine the URL names."""
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    @property
    def request_pool_size(self) -> int:
        """How many requests use the database at once (``db_pool_size`` when set).

        On SQLite a request's transaction holds the database's one write lock from its
        first statement to its commit, so requests are serialised whatever the pool's
        size; one connection serves them all, and its page cache stays valid from one
        request to the next. With several, each request's connection finds the file
        changed by the others' commits and reads its pages again (about a tenth of a
        FHIR request's CPU, measured with bench/fhir_crud.py).
        """
        if self.db_pool_size is not None:
            return self.db_pool_size
        return 1 if self.database_kind == "sqlite" else 10

    @cached_property
    def tz(self) -> ZoneInfo:
        """The clinic's time zone, for display and for local working hours."""
        return ZoneInfo(self.clinic_timezone)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL and in-memory databases."""
        if self.database_kind != "sqlite":
            return None
        path = self.database_url.removeprefix("sqlite:///")
        return None if path in ("", ":memory:") else Path(path)

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry the Secure flag everywhere but on a developer's laptop."""
        return self.env == "production"
