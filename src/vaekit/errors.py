"""The one exception type a user of vaekit should ever see.

Every problem a user can fix (a bad flag, a missing file, a corrupt dataset) is raised as
`VaekitError` with a message that names the problem and the fix. The CLI prints it as one line
and exits with status 2; anything else escaping is a bug in vaekit.
"""


class VaekitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ReportedByRankZero(VaekitError):
    """Rank 0's error, handed to another rank of a distributed run: rank 0 prints it, the others
    exit quietly."""
