"""The one exception type for problems the user can fix (bad input, missing weights, wrong option).

The CLI prints such an error as a single line and exits with status 2; anything else is a bug and keeps its
traceback.
"""


class ZeroconError(Exception):
    """A user-facing error: its message is one line that says what is wrong and how to fix it."""
