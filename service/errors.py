"""The one base class for errors a user caused and can fix (bad file, bad flag, no model).

The CLI prints these as one clear message and exits non-zero; anything else is a bug and keeps its
traceback.
"""


class MallrecError(Exception):
    """An error with a message meant for the person who ran the command."""

    exit_code = 2
