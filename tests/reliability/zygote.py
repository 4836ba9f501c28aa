"""A fork server for crash tests: imports nocd once, then forks `nocd run -c FILE` on demand.

A cold `python -m nocd run` spends ~1.5 s importing (pydantic models, aiohttp's TLS context)
before it touches the state database; forking a process that already imported everything
lets a crash campaign spend its time killing the daemon while it works, not while it imports.
Each child is a separate process running exactly `nocd.cli.main(["run", "-c", FILE])`.

Protocol (one line per command on stdin, one line per answer on stdout):
    spawn CONFIG LOGFILE  ->  PID
    reap PID              ->  the wait status as the child's exit code or -SIGNAL
    quit
"""

from __future__ import annotations

import os
import sys


def _preload() -> None:
    """Import what `nocd run` would import lazily, so children start warm."""
    from twilio.rest import Client

    import nocd.cli
    import nocd.daemon
    import nocd.tickets.webhook
    import paging.twilio_notifier

    # The REST client builds its API domains lazily; touch the two that pages use.
    client = Client("AC" + "0" * 32, "preload")
    _ = client.api.v2010.account.calls, client.api.v2010.account.messages
    del nocd, paging


def _child(config: str, logfile: str) -> None:
    fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    code = 70
    try:
        from nocd.cli import main

        code = main(["run", "-c", config])
    except BaseException as exc:  # noqa: BLE001 - report anything, then leave without cleanup
        print(f"zygote child: {exc!r}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main() -> int:
    """Serve spawn/reap commands until `quit` or EOF."""
    _preload()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(args[0], args[1])
            out.write(f"{pid}\n")
        elif cmd == "reap":
            _, status = os.waitpid(int(args[0]), 0)
            out.write(f"{_status(status)}\n")
        elif cmd == "quit":
            break
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
