"""Audit: the trail of one operation (`trace`) and tamper evidence (`seal`, `verify`, signed seals)."""

from chronik.audit.chains import Break
from chronik.audit.seals import TamperDetected, VerifyReport, anchor, newest_seal, parse_anchor, seal, verify
from chronik.audit.signing import SealSigner, SealVerifier, SigningKeyError, generate_key_pair
from chronik.audit.trace import trace

__all__ = [
    "Break",
    "SealSigner",
    "SealVerifier",
    "SigningKeyError",
    "TamperDetected",
    "VerifyReport",
    "anchor",
    "generate_key_pair",
    "newest_seal",
    "parse_anchor",
    "seal",
    "trace",
    "verify",
]
