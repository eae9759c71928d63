"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class FacecastError(Exception):
    """Base of every error facecast reports to the user as one line."""


class InputError(FacecastError):
    """Bad user input: a missing, corrupt or unsupported file, or invalid values."""


class NoFaceError(InputError):
    """No usable face was found in a portrait."""


class OutputError(FacecastError):
    """An output cannot be written (unwritable path, existing file without --overwrite)."""
