"""``xrh verify --table``'s usage errors (exit 3) name the option and value."""

from __future__ import annotations

import pytest

from verify import cli
from verify.__main__ import main
from xrh.errors import UsageError


def parse(argv):
    return cli.build_parser().parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--table-b", "other", "--endpoint", "aws"], "--table-b other: needs --table"),
        (["--table", "t", "--stream", "s", "--endpoint", "aws"], "does not go with --stream"),
        (["--table", "t", "--run-dir", "runs/latest"], "does not go with --run-dir"),
        (["--table", "t", "--endpoint", "aws", "--scan-segments", "0"], "--scan-segments 0"),
        (["--table", "t", "--runs-dir", "/nonexistent/runs"], "no embedded endpoint"),
    ],
)
def test_usage_errors_name_the_option(argv, message):
    with pytest.raises(UsageError, match=message):
        cli.run(parse(argv))


def test_usage_error_exit_code_is_3(capsys):
    assert main(["--table-b", "x"]) == 3
    assert "--table-b x" in capsys.readouterr().err
