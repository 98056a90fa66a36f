"""The project's exception types. The CLI turns each into a one-line error: InputError (bad
user input) exits with code 2, TrainingError (a run that cannot go on) with code 1."""


class InputError(ValueError):
    """Bad user input: an unknown word, a malformed file, a number out of range."""


class TrainingError(RuntimeError):
    """A training run stopped: e.g. too many steps in a row with a non-finite loss."""
