"""Errors that the command line reports as one line with exit code 2."""


class ScoremixError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(ScoremixError):
    pass


class DataError(ScoremixError):
    pass


class CheckpointError(ScoremixError):
    pass


class TrainingError(ScoremixError):
    pass


class TeacherError(ScoremixError):
    """A teacher file that cannot be loaded safely or is not understood."""
