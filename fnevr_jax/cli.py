"""The one command-line convention of every fnevr_jax command.

- Flags are parsed with argparse and spelled with dashes (`--batch-size`); `--help` lists them.
- A config is `--config=FILE[:VARIANT]`, any field overridden with `--config.FIELD=VALUE`
  (ml_collections' config-file grammar: typed, locked, typos rejected).
- Errors are one line on stderr, `error: ...`: exit status 2 for bad flags (the command line
  itself is wrong), 1 for bad input (a missing file, a corrupt checkpoint, unusable data).
"""
import argparse
import sys

from absl import flags as absl_flags
from ml_collections import config_flags


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (`error: ...`, exit status 2)."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def parser(description, *, config=None):
    """A parser for a command; `config` (a default `FILE[:VARIANT]`) adds `--config`."""
    p = ArgumentParser(description=description.strip().splitlines()[0])
    if config is not None:
        p.add_argument("--config", default=config, metavar="FILE[:VARIANT]",
                       help="config file and variant (default %(default)s); override any "
                            "field with --config.FIELD=VALUE")
    return p


def parse(p, argv=None):
    """Parses `argv` (default sys.argv[1:]); with `--config`, `args.config` is the loaded
    ConfigDict with the `--config.FIELD=VALUE` overrides applied."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args, rest = p.parse_known_args(argv)
    overrides = [a for a in rest if a.startswith("--config.")]
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not hasattr(args, "config"):
        if overrides:
            p.error(f"unrecognized arguments: {' '.join(overrides)}")
        return args
    values = absl_flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True)
    config_argv = [p.prog, f"--config={args.config}", *overrides]
    saved, sys.argv = sys.argv, config_argv   # config_flags finds the overrides in sys.argv
    try:
        values(config_argv)
        args.config = values.config
    except (absl_flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
        text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
        lines = [line.strip().strip("'") for line in text.splitlines() if line.strip()]
        message = " ".join(lines[-2:]) if lines[-1].startswith("Did you mean") else lines[-1]
        p.error(f"bad config or config field: {message}")
    finally:
        sys.argv = saved
    return args


def run(fn, errors):
    """`fn()`'s exit status (0 when it returns None); an exception of the `errors` types
    (bad input) is reported as one line with exit status 1."""
    try:
        status = fn()
    except errors as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 1
    return 0 if status is None else status
