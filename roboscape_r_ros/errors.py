"""The base of every error this package raises for predictable bad input.

Commands catch ``RoboscapeError`` and print its one-line message; anything else is a bug and keeps
its traceback.
"""


class RoboscapeError(Exception):
    """Bad input or state a user can fix; the message names the culprit in one line."""
