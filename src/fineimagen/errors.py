"""The one exception type for bad user input; the CLI turns it into a one-line error, exit 2."""


class InputError(ValueError):
    """Bad user input: an unknown word, a malformed file, a number out of range."""
