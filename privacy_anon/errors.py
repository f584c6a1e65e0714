"""Exceptions. The CLI turns `InputError` into one line on stderr and exit code 2."""


class PrivacyAnonError(Exception):
    """Base class of this package's errors."""


class InputError(PrivacyAnonError, ValueError):
    """Bad input from the user: a missing or malformed file, a bad value. Exit code 2."""


class ConfigError(InputError):
    """A config preset, YAML file or override that cannot be applied."""


class DataError(InputError):
    """A data set, annotation or image that cannot be read as documented."""


class PartialOutputError(InputError):
    """Input that failed part-way; what was done before is kept at `partial` (a video cut
    short: its anonymized frames in NAME.partial.EXT). `reason` is the failure alone."""

    def __init__(self, reason: str, partial, done: int):
        super().__init__(f"{reason}; the {done} frames before it, anonymized, are in {partial}")
        self.reason, self.partial, self.done = reason, partial, done


class ExportRefused(InputError):
    """An export refused on a measured ground (M barely changes faces, or int8 is too far
    from the Keras M): nothing is written. `reason` is the measurement alone, without the
    file or the advice."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason
