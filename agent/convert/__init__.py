"""``python -m agent convert fluent-bit.conf [-o agent.toml]``: a fluent-bit configuration
(classic or YAML) as an equivalent agent.toml.

Exit status: 0 everything translated; 3 written, but something was left out (listed at the
top of the file and on stderr, with file and line); 2 the fluent-bit file could not be read.
"""

from __future__ import annotations

import argparse
import os
import sys

from agent.convert.mapping import Result, convert
from agent.convert.model import ConvertError, FluentBitConfig

EXIT_LEFT_OUT = 3


def read(path: str) -> FluentBitConfig:
    """Classic or YAML, told by the file name (.yaml/.yml) or, failing that, by content."""
    if path.endswith((".yaml", ".yml")) or _looks_yaml(path):
        from agent.convert.files import read_yaml

        return read_yaml(path)
    from agent.convert.files import read_classic

    return read_classic(path)


def _looks_yaml(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                stripped = line.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                return (
                    stripped.split(":")[0].lower()
                    in (
                        "service",
                        "pipeline",
                        "includes",
                        "env",
                        "parsers",
                        "multiline_parsers",
                    )
                    and ":" in stripped
                    and not stripped.startswith("[")
                )
    except OSError:
        return False
    return False


def convert_file(path: str) -> tuple[str, Result]:
    from agent.convert.writer import render

    result = convert(read(path))
    base = os.path.dirname(os.path.abspath(path))
    return render(result, os.path.basename(path), base), result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="container-audit-agent convert",
        description="Write an agent.toml equivalent to a fluent-bit configuration (classic "
        "format or YAML). Exit 0: everything translated; 3: something was left out (listed "
        "at the top of the written file and on stderr); 2: the input could not be read.",
    )
    parser.add_argument("file", help="fluent-bit.conf or fluent-bit.yaml")
    parser.add_argument("-o", "--output", help="where to write agent.toml (default: stdout)")
    args = parser.parse_args(argv)
    try:
        text, result = convert_file(args.file)
    except ConvertError as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return 2
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            print(f"convert: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    base = os.path.dirname(os.path.abspath(args.file))
    for note in result.notes:
        label = "not translated" if note.left_out else "note"
        print(f"{label}: {note.render(base)}", file=sys.stderr)
    left_out = result.left_out
    if left_out:
        print(f"convert: {len(left_out)} setting(s) not translated; see above", file=sys.stderr)
        return EXIT_LEFT_OUT
    return 0
