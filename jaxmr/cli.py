"""Turns expected failures of train.py / eval.py into short errors (no traceback wall).

An error prints as one headline line, `error: <Type>: <first line of the message>`, followed
by the rest of the message when it was written to carry a listing (e.g. the expected Recipe1M
layout), indented under the headline. Messages that embed a traceback keep only their first
and last lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXPECTED = (ValueError, FileNotFoundError, FloatingPointError, KeyError, TypeError)


def run_cli(fn: Callable[[], object]) -> int:
    """Runs `fn`; expected errors print `error: <message>` on stderr and return 1.

    Set JAXMR_TRACEBACK=1 to get the full traceback instead.
    """
    from absl import logging

    # Orbax logs every save at INFO through absl; keep the console to our progress lines.
    if logging.get_verbosity() > logging.WARNING:
        logging.set_verbosity(logging.WARNING)
    try:
        fn()
    except EXPECTED as e:
        if os.environ.get("JAXMR_TRACEBACK"):
            raise
        print(f"error: {type(e).__name__}: {format_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def parse_flags(argv: list[str]) -> list[str]:
    """absl flags parser that reports a bad config override or file in one line.

    Unknown config keys surface from ml_collections as AttributeError/KeyError with a
    traceback; wrong types as flags.Error. Both become `error: ...` and exit status 2.
    """
    from absl import flags

    try:
        rest = flags.FLAGS(argv)
        for name in ("config",):
            if name in flags.FLAGS:
                # config files load lazily: force it now so errors surface here.
                getattr(flags.FLAGS[name].value, "task", None)
        return rest
    except flags.Error as e:
        msg = format_message(e)
    except (AttributeError, KeyError) as e:
        bad = [a for a in argv[1:] if a.startswith("--config.")]
        msg = f"unknown config key in {bad}: {e}"
    except (ValueError, TypeError, OSError, ImportError, SyntaxError) as e:
        msg = f"{type(e).__name__}: {format_message(e)}"
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


MAX_DETAIL_LINES = 30


def format_message(e: BaseException) -> str:
    """The message of `e` as a headline line plus, if the message has more lines, its listing.

    - one line: returned as is;
    - a message that embeds a traceback (`Traceback (most recent call last):`): its first
      and last non-blank lines, joined on one line;
    - any other multi-line message: the first line, then every further line indented by two
      spaces with its own indentation kept (at most `MAX_DETAIL_LINES` of them, then a count
      of the rest), so listings such as an expected file layout stay readable.
    """
    text = str(e).strip()
    if not text:
        return type(e).__name__
    lines = [ln.rstrip() for ln in text.splitlines()]
    head, rest = lines[0].strip(), [ln for ln in lines[1:] if ln.strip()]
    if not rest:
        return head
    if "Traceback (most recent call last)" in text:
        return f"{head} {rest[-1].strip()}"
    shown = rest[:MAX_DETAIL_LINES]
    if len(rest) > len(shown):
        shown.append(f"... ({len(rest) - len(shown)} more lines; JAXMR_TRACEBACK=1 shows all)")
    return "\n".join([head] + ["  " + ln for ln in shown])


def define_distributed_flags() -> None:
    """--distributed/--coordinator_address/--num_processes/--process_id (see
    jaxmr.train.distributed)."""
    from absl import flags

    flags.DEFINE_enum(
        "distributed",
        "auto",
        ["auto", "on", "off"],
        "Multi-process JAX: auto-detect (TPU pod/SLURM/MPI, or when --coordinator_address is "
        "set), always, or never.",
    )
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Number of processes.")
    flags.DEFINE_integer("process_id", None, "This process's index.")


def init_distributed() -> bool:
    from absl import flags

    from jaxmr.train.distributed import initialize

    f = flags.FLAGS
    return initialize(
        f.distributed,
        coordinator_address=f.coordinator_address,
        num_processes=f.num_processes,
        process_id=f.process_id,
    )
