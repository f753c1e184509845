"""The exception tree of artq.

Every error a user can cause or fix derives from :class:`ArtqError`; the CLI turns it into a
one-line message and a non-zero exit code. Messages say what is wrong and how to fix it.
"""

from __future__ import annotations


class ArtqError(Exception):
    """Base of every error artq raises on purpose."""


class ConfigError(ArtqError):
    """The configuration file or an environment variable is missing, malformed or inconsistent."""


class SourceError(ArtqError):
    """A metric source (AppDynamics controller or the simulator) could not be read."""


class SourceUnavailable(SourceError):
    """Transient: connection refused, timeout, 5xx. Safe to retry later."""


class AuthFailed(SourceError):
    """The source refused the credentials (401/403) even after a fresh token."""


class InvalidResponse(SourceError):
    """The source answered, but the body is not what the API promises (names the metric)."""


class UnknownApplication(SourceError):
    """The source does not know the configured application."""


class StorageError(ArtqError):
    """The database is unreachable, not migrated, or holds data that breaks an invariant."""


class ModelError(ArtqError):
    """A model version is missing, corrupt (checksum), or does not match the features."""


class NotEnoughData(ArtqError):
    """Too little history to build features, train or evaluate."""


class InputError(ArtqError):
    """A user-supplied file or argument (CSV, time, option) is invalid."""


class CycleAlreadyRunning(ArtqError):
    """The cycle of this (application, origin) is in flight already; the trigger was ignored."""
