"""``python -m verify``: the same command as ``xrh verify``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from verify import cli
    from xrh.config import add_common_options
    from xrh.errors import HarnessError

    parser = argparse.ArgumentParser(prog="python -m verify", description=cli.__doc__)
    add_common_options(parser)
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cli.run(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
