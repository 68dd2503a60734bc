"""``python -m verify``: the same command as ``xrh verify``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from verify import cli
    from xrh.errors import HarnessError

    args = cli.build_parser("python -m verify").parse_args(argv)
    try:
        return cli.run(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
