"""Signed seals: an Ed25519 key kept outside the database signs every seal it makes.

Why: the seal algorithm is public, so anyone who can write the database can also write seals
that agree with whatever they did to the events (delete a seal, edit the events of its range,
seal them again). A signature needs the private key, which the database never sees: a seal
that was forged or altered no longer verifies with the public key. What a signature cannot
show is a seal that is *missing*: deleting the newest seals leaves a table of valid signatures
(`chronik verify --expect-seal N:HASH` is for that, see `chronik.audit.seals`).

The key files are PEM: the private key PKCS#8, unencrypted, readable by its owner only (mode
0600, refused otherwise, as ssh does); the public key SubjectPublicKeyInfo. The signature is
over a text naming every field of the seal row but the signature itself, stored in hex.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from chronik.errors import ChronikError
from chronik.projections.dialect import SealRow

SIGNED_TEXT_VERSION: Final = "chronik-seal-signature-1"


class SigningKeyError(ChronikError):
    """A key file that cannot be used: absent, unreadable, not Ed25519, or readable by others."""


def signed_text(seal: SealRow) -> bytes:
    """What the signature covers: the seal's every field (its hash already folds its events and
    chains to the previous seal), each on its own line."""
    return (
        f"{SIGNED_TEXT_VERSION}\n{seal.seal_no}\n{seal.from_position}\n{seal.to_position}\n"
        f"{seal.event_count}\n{seal.previous_seal_hash}\n{seal.seal_hash}\n{seal.sealed_at}\n"
    ).encode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short name for a public key in messages: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class SealSigner:
    """Signs seals with one private key (`chronik seal --signing-key PATH`)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    @classmethod
    def from_file(cls, path: str | Path) -> SealSigner:
        path = Path(path)
        data = _read(path, "signing key")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SigningKeyError(
                f"signing key {str(path)!r} is readable by others (mode {mode:04o}): chmod 600 it"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise SigningKeyError(
                f"{str(path)!r} is not a PEM private key without a password: {error}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{str(path)!r} is not an Ed25519 private key")
        return cls(key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key.public_key()

    def sign(self, seal: SealRow) -> SealRow:
        """The same seal, carrying its signature."""
        signature = self.key.sign(signed_text(seal)).hex()
        return SealRow(
            seal.seal_no,
            seal.from_position,
            seal.to_position,
            seal.event_count,
            seal.previous_seal_hash,
            seal.seal_hash,
            seal.sealed_at,
            signature,
        )


class SealVerifier:
    """Checks seal signatures against one or more public keys (several: while a key is rotated)."""

    def __init__(self, keys: list[Ed25519PublicKey]) -> None:
        if not keys:
            raise SigningKeyError("a seal verifier needs at least one public key")
        self.keys = keys

    @classmethod
    def from_files(cls, paths: list[str | Path]) -> SealVerifier:
        keys = []
        for path in map(Path, paths):
            try:
                key = serialization.load_pem_public_key(_read(path, "verify key"))
            except (ValueError, TypeError) as error:
                raise SigningKeyError(f"{str(path)!r} is not a PEM public key: {error}") from None
            if not isinstance(key, Ed25519PublicKey):
                raise SigningKeyError(f"{str(path)!r} is not an Ed25519 public key")
            keys.append(key)
        return cls(keys)

    def problem(self, seal: SealRow) -> str | None:
        """Why this seal's signature is not good (unsigned, malformed, or made with no given key), or None."""
        if seal.signature is None:
            return "the seal is not signed (made without a signing key, or its signature was removed)"
        try:
            signature = bytes.fromhex(seal.signature)
        except ValueError:
            return "its signature is not hex: the seal table was altered"
        text = signed_text(seal)
        for key in self.keys:
            try:
                key.verify(signature, text)
            except InvalidSignature:
                continue
            return None
        names = ", ".join(fingerprint(key) for key in self.keys)
        return (
            f"its signature does not verify with the given key(s) ({names}): the seal was forged "
            "or altered, or signed with another key"
        )


def generate_key_pair(private_path: str | Path, public_path: str | Path) -> Ed25519PublicKey:
    """Write a new Ed25519 key pair: the private key with mode 0600 from its first byte, never over
    an existing file (either path existing is an error, and nothing is written)."""
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{str(path)!r} already exists: refusing to overwrite a key")
        if not path.parent.is_dir():
            raise SigningKeyError(f"no directory {str(path.parent)!r} for {str(path)!r}")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink()  # nothing half-written: a private key without its public half
        raise
    return key.public_key()


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SigningKeyError(f"{str(path)!r} already exists: refusing to overwrite a key") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # the umask may have taken bits off the public key's mode


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"no {what} at {str(path)!r}") from None
    except OSError as error:
        raise SigningKeyError(f"cannot read {what} {str(path)!r}: {error.strerror}") from None
