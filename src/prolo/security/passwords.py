"""Password hashing (argon2id) and a password policy after NIST SP 800-63B.

SP 800-63B asks for a minimum length of 8 (we ask 12 for staff-grade accounts),
allows all printable characters and spaces, sets no composition rules, and checks
new passwords against commonly used ones. See
https://pages.nist.gov/800-63-3/sp800-63b.html section 5.1.1.2.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 128

# A short list of the passwords that top every breach corpus; the policy refuses them.
_COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "123456789012",
        "qwertyuiopas",
        "letmeinletmein",
        "iloveyouiloveyou",
        "welcomewelcome",
        "administrator",
        "changemechangeme",
        "prolotherapy",
        "prolotherapy1",
    }
)

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why ``password`` is not acceptable, or None when it is."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if password.lower() in _COMMON or len(set(password)) < 4:
        return "is too common or too repetitive; choose another"
    local = email.split("@", 1)[0].lower()
    if local and len(local) >= 4 and local in password.lower():
        return "must not contain your email name"
    return None


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; never raises on a bad hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


# A hash to verify against when the account does not exist, so that a login for
# an unknown email takes as long as one for a known email.
DUMMY_HASH = _hasher.hash("not-a-real-password-for-timing")
