"""The nn-xp command line: train, predict, evaluate, info (and parity).

Every option has a hyphenated spelling and the notebooks' underscore spelling
(--learning-rate and --learning_rate). Errors print one line on stderr and exit with status 2;
--debug shows the traceback instead.

`parser.py` spells the options (`build_parser`); each command is a `cmd_<name>(args) -> int`:
`train.py` (train), `use.py` (predict, evaluate, export, inspect: what uses a model file),
`info.py` (info, parity); `_common.py` reads the data they share. `main` runs one.
"""

from __future__ import annotations

import os
import sys

from .info import cmd_info, cmd_parity
from .parser import build_parser
from .train import cmd_train
from .use import cmd_evaluate, cmd_export, cmd_inspect, cmd_predict

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "info": cmd_info,
            "parity": cmd_parity, "export": cmd_export, "inspect": cmd_inspect}


def main(argv=None) -> int:
    from ..signals import TerminateAsInterrupt

    with TerminateAsInterrupt() as terminate:  # SIGTERM stops as Ctrl-C does; 143 = 128 + SIGTERM
        code = _main(argv)
    return 143 if code == 130 and terminate.received else code


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `nn-xp predict ... | head -1`: the reader is gone; say nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit is quiet too
        return 141
    except KeyboardInterrupt:
        print("nn-xp: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, RuntimeError, KeyError, MemoryError) as error:
        if getattr(args, "debug", False):
            raise
        if getattr(error, "silent", False):  # the same error on every rank: rank 0 has said it
            return 2
        message = str(error) if not isinstance(error, KeyError) else f"missing {error}"
        if isinstance(error, MemoryError):
            message = f"out of memory: {message or 'the data or the network is too large for this machine'}"
        print(f"nn-xp: error: {message}", file=sys.stderr)
        return 2
