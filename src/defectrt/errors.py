"""Errors users can act on. Each message names the file or argument and says what to do."""


class DefectrtError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class UserInputError(DefectrtError, ValueError):
    """A file, argument or image the user supplied is unusable."""


class OutputExistsError(DefectrtError, FileExistsError):
    """An output already exists and --force was not given."""
