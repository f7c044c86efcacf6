"""Time-based one-time passwords (RFC 6238) for staff two-factor login.

pyotp does the arithmetic; segno draws the enrolment QR code as SVG on the server,
so nothing is fetched from the network.
"""

from __future__ import annotations

import pyotp
import segno

ISSUER = "prolo"


def new_secret() -> str:
    """A fresh base32 secret (160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, account: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an SVG data URI (allowed by the CSP's img-src)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, dark="#1f2933"))


def verify_code(secret: str, code: str) -> bool:
    """True when ``code`` is the current code, or the one just before or after it
    (one 30-second step of clock drift either way)."""
    digits = code.strip().replace(" ", "")
    if not (digits.isdigit() and len(digits) == 6):
        return False
    return bool(pyotp.TOTP(secret).verify(digits, valid_window=1))
