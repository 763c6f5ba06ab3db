"""Audit: the trail of one operation (`trace`) and tamper evidence (`seal`, `verify`)."""

from chronik.audit.chains import Break
from chronik.audit.seals import TamperDetected, VerifyReport, seal, verify
from chronik.audit.trace import trace

__all__ = [
    "Break",
    "TamperDetected",
    "VerifyReport",
    "seal",
    "trace",
    "verify",
]
