import pytest
from pydantic import ValidationError

from prolo.settings import DEVELOPMENT_SECRET, Settings


def test_defaults_are_embedded_sqlite() -> None:
    s = Settings(_env_file=None)
    assert s.database_kind == "sqlite"
    assert s.sqlite_path is not None and s.sqlite_path.name == "prolo.db"


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="PROLO_SECRET_KEY"):
        Settings(env="production", secret_key=DEVELOPMENT_SECRET)


def test_production_accepts_a_real_secret() -> None:
    s = Settings(env="production", secret_key="x" * 48, database_url="postgresql://db/prolo")
    assert s.secure_cookies and s.database_kind == "postgresql"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("database_url", "mysql://x", "PROLO_DATABASE_URL"),
        ("clinic_timezone", "Mars/Olympus", "IANA"),
        ("port", 0, "greater than or equal"),
    ],
)
def test_bad_settings_name_the_problem(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})
