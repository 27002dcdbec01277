"""Pure helpers: password hashing, operator message id normalisation (field lesson 1)."""

from __future__ import annotations

import pytest

import catalyst_smpp.store.passwords as passwords
import catalyst_smpp.store.records as records
from catalyst_smpp.store import (
    VerifiedPasswords,
    hash_password,
    needs_rehash,
    verify_password,
)


def test_password_hash_roundtrip_and_salt() -> None:
    h1, h2 = hash_password("secret"), hash_password("secret")
    assert h1 != h2  # per-row salt
    assert verify_password("secret", h1) and verify_password("secret", h2)
    assert not verify_password("Secret", h1) and not verify_password("", h1)
    assert not needs_rehash(h1)


def test_verified_passwords_skip_scrypt_only_for_a_known_good_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    scrypt_checks: list[str] = []
    real = passwords.verify_password

    def counting(password: str, stored: str) -> bool:
        scrypt_checks.append(password)
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", counting)
    v = VerifiedPasswords(max_entries=2)
    h = hash_password("secret")
    assert v.verify("secret", h) and v.verify("secret", h) and v.verify("secret", h)
    assert scrypt_checks == ["secret"] and v.hits == 2  # the rebinds came from memory
    # wrong passwords are never remembered: each one pays scrypt again
    assert not v.verify("guess", h) and not v.verify("guess", h)
    assert scrypt_checks == ["secret", "guess", "guess"]
    # a changed password is a new stored hash (new salt): the old password fails, the new one is checked
    h2 = hash_password("new")
    assert not v.verify("secret", h2) and v.verify("new", h2)
    assert scrypt_checks[-2:] == ["secret", "new"]
    # bounded: with two entries, the least recently used pair is forgotten and checked again
    h3 = hash_password("third")
    assert v.verify("third", h3)  # remembered now: (new, h2), (third, h3); (secret, h) dropped
    n = len(scrypt_checks)
    assert v.verify("secret", h) and len(scrypt_checks) == n + 1
    with pytest.raises(ValueError):
        VerifiedPasswords(max_entries=0)


def test_address_outside_allowed_ips_is_refused_before_any_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A disallowed address costs no scrypt and cannot tell a right password from a wrong one."""
    scrypt_checks: list[str] = []
    real = passwords.verify_password

    def counting(password: str, stored: str) -> bool:
        scrypt_checks.append(password)
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", counting)
    monkeypatch.setattr(records, "verify_password", counting)
    fenced = records.Partner(
        id=1, system_id="fenced", password_hash=hash_password("secret"), allowed_ips=["10.0.0.0/8"]
    )
    outside = [records.authenticate(fenced, pw, "192.0.2.7") for pw in ("secret", "wrong")]
    assert outside == [records.AuthResult.ADDRESS_NOT_ALLOWED] * 2
    assert scrypt_checks == []
    assert records.authenticate(fenced, "secret", "10.1.2.3") is records.AuthResult.OK
    assert records.authenticate(fenced, "wrong", "10.1.2.3") is records.AuthResult.BAD_PASSWORD
    # an unknown system_id pays the same scrypt as a wrong password (no timing difference)
    assert records.authenticate(None, "secret", "192.0.2.7") is records.AuthResult.UNKNOWN_SYSTEM_ID
    assert scrypt_checks == ["secret", "wrong", "secret"]


@pytest.mark.parametrize(
    "stored", ["", "plain", "scrypt$x$8$1$AA==$AA==", "md5$1$2$3$4$5", "scrypt$1$2$3$!!$!!"]
)
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not verify_password("secret", stored)
    assert needs_rehash(stored) or stored.startswith("scrypt$")
