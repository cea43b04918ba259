"""Basic-auth credentials as tokens carry them: control hashes what a user sets
(``hash_basic_password``), the edge checks what a visitor sends (``check_basic_password``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

# PBKDF2 rounds for tunnel basic-auth passwords carried in tokens. The edge remembers the
# header values it has accepted, so the cost is paid once per visitor credential, not per
# request.
BASIC_AUTH_ROUNDS = 100_000


def hash_basic_password(user: str, password: str, salt: bytes | None = None) -> str:
    """``user:salt:hash`` for a token's ``basic_auth`` list (salt and hash base64url)."""
    if ":" in user or not user:
        raise ValueError("a basic-auth user name must be non-empty and contain no ':'")
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, BASIC_AUTH_ROUNDS)
    b64 = base64.urlsafe_b64encode
    return f"{user}:{b64(salt).decode().rstrip('=')}:{b64(digest).decode().rstrip('=')}"


def check_basic_password(entry: str, user: str, password: str) -> bool:
    """Whether ``user``/``password`` match one ``user:salt:hash`` entry."""
    try:
        want_user, salt_text, _ = entry.split(":", 2)
        salt = base64.urlsafe_b64decode(salt_text + "=" * (-len(salt_text) % 4))
    except ValueError:
        return False
    if not hmac.compare_digest(want_user.encode(), user.encode()):
        return False
    return hmac.compare_digest(hash_basic_password(user, password, salt), entry)
