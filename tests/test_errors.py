"""errors.py: one family of user-fixable errors, and the exit code the CLI returns for each."""

import pytest

from thinktune.errors import ConfigError, DataError, TrainingDiverged, UserError


@pytest.mark.parametrize("cls, code", [(UserError, 2), (DataError, 2), (ConfigError, 2), (TrainingDiverged, 3)])
def test_exit_codes(cls, code):
    assert cls.exit_code == code
    assert cls("x").exit_code == code  # what cli.main returns: the instance's exit_code


@pytest.mark.parametrize("cls", [DataError, ConfigError, TrainingDiverged])
def test_every_error_is_a_user_error_so_the_cli_catches_it(cls):
    assert issubclass(cls, UserError) and issubclass(cls, Exception)
    with pytest.raises(UserError) as e:
        raise cls("Data file d.json: 1 of 2 rows cannot be used.")
    assert type(e.value) is cls
    assert str(e.value) == "Data file d.json: 1 of 2 rows cannot be used."  # the paragraph, unchanged


def test_the_three_kinds_are_distinct():
    assert not issubclass(DataError, ConfigError) and not issubclass(ConfigError, DataError)
    assert not issubclass(TrainingDiverged, (DataError, ConfigError))
    try:
        raise DataError("bad rows")
    except ConfigError:
        caught = "ConfigError"
    except UserError as e:
        caught = type(e).__name__
    assert caught == "DataError"
