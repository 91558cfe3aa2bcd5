"""Domain errors. The CLI turns each into one clear line and a non-zero exit."""


class AlemsError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(AlemsError):
    """Bad flags or arguments."""

    exit_code = 2
