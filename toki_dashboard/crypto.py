"""Symmetric encryption for provider credentials at rest (Fernet).

FIELD_ENCRYPTION_KEY may hold several comma-separated passphrases: the first
encrypts, all decrypt, so keys can be rotated without losing stored secrets.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet_for(passphrase: str) -> Fernet:
    digest = hashlib.sha256(passphrase.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


@cache
def _cipher(keys: str, secret_key: str, debug: bool) -> MultiFernet:
    passphrases = [k.strip() for k in keys.split(",") if k.strip()]
    if not passphrases:
        if not debug:
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must be set to store provider credentials.")
        passphrases = [secret_key]  # development only
    return MultiFernet([_fernet_for(p) for p in passphrases])


def cipher() -> MultiFernet:
    return _cipher(settings.FIELD_ENCRYPTION_KEY, settings.SECRET_KEY, settings.DEBUG)


def encrypt(plaintext: str) -> str:
    return cipher().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return cipher().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "Stored credentials cannot be decrypted: FIELD_ENCRYPTION_KEY changed without keeping the old key."
        ) from exc


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
