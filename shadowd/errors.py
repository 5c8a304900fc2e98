"""The one exception tree of shadowd.

Every error a user can meet is a ShadowdError; its message says what is wrong, shows the
offending value and says how to fix it. Edges wrap foreign exceptions with ``raise ... from
err``. Only ``shadowd.cli`` prints errors (``error: <message>``, exit 1).
"""

from __future__ import annotations


class ShadowdError(Exception):
    """Base of every error shadowd raises on purpose."""


class ConfigError(ShadowdError):
    """A config, platform profile or trigger expression is invalid.

    Example: ``trigger "hard_brake": expression error at column 14: unknown signal "sped_mps"``.
    """


class BundleError(ConfigError):
    """A pushed config bundle was refused (expired, wrong target, replayed version, ...).

    ``reason`` is a short machine-readable word (``expired``, ``replayed``, ``wrong_target``,
    ``model_hash``, ``invalid``) so status and metrics can count refusals by cause.
    """

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


class BundleSignatureError(BundleError):
    """A bundle's Ed25519 signature does not verify against any trusted key."""

    def __init__(self, message: str):
        super().__init__(message, reason="bad_signature")


class RingError(ShadowdError):
    """A shared-memory ring operation failed; ``errno`` keeps the C return code."""

    def __init__(self, message: str, errno: int = 0):
        super().__init__(message)
        self.errno = errno


class RingCorruptError(RingError):
    """A segment is truncated, has a wrong magic, or a header that does not add up."""


class RingVersionError(RingError):
    """A segment has another layout version or slot size than this build reads."""


class AdapterNotAvailableError(ShadowdError, NotImplementedError):
    """A platform adapter or bus interface is unknown or cannot run on this machine."""


class ModelError(ShadowdError):
    """A candidate model is unreadable, of the wrong shape, or failed at inference."""


class DecodeError(ShadowdError):
    """An input log or frame could not be decoded (malformed, unknown id, wrong length)."""


class ClipError(ShadowdError):
    """A clip file is corrupt, truncated, of a foreign format or of an unknown version."""


class SpoolError(ShadowdError):
    """The spool cannot accept or keep a clip (disk full, quota exceeded, I/O error)."""


class UploadError(ShadowdError):
    """An upload failed. ``retryable`` says whether trying again later can succeed."""

    def __init__(self, message: str, retryable: bool = True, cause: str = "other"):
        super().__init__(message)
        self.retryable = retryable
        self.cause = cause


class ReplayError(ShadowdError):
    """A replay input could not be read; the rest of the run goes on."""
