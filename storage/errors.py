"""Errors raised by the storage layer; callers above translate them to their own."""


class StorageError(Exception):
    """Base class for storage failures the caller can act on."""


class DuplicateSerialError(StorageError):
    """A certificate with this serial number is already recorded (the UNIQUE constraint held)."""


class ConflictError(StorageError):
    """A conditional update found the row in another state than expected."""
