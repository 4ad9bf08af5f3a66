"""One error type for everything the user can fix: the CLI prints it as a paragraph, exit 2."""


class UserError(Exception):
    """Bad input or a bad setting. The message is one paragraph that names what to fix."""

    exit_code = 2


class DataError(UserError):
    """A data file that cannot be used as it is (names the file, the rows and the field)."""


class ConfigError(UserError):
    """A config file or --set override that does not match the documented settings."""


class TrainingDiverged(UserError):
    """The loss or the gradients stopped being finite numbers; the CLI exits with code 3."""

    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a run, with a message that says what was kept and how to continue."""
