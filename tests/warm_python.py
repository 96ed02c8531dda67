"""A Python that has done the scripts' slow imports once and forks a copy of itself for each script a test runs.

A fresh interpreter spends ≈ 3 s of CPU importing torch before a script parses its arguments, and the tests
start scripts hundreds of times: conftest.run_script sends each run here instead (see its docstring for
which runs still get a fresh interpreter). A child runs the script as `python SCRIPT ARGS` would: the file
as __main__, sys.argv set, sys.path starting with the script's own folder, in the given working directory
with exactly the given environment, stdin from /dev/null, stdout and stderr into the given files. Its exit
status follows the interpreter's rules: SystemExit's code, 1 after an uncaught exception (its traceback on
stderr), killed by SIGINT after an uncaught KeyboardInterrupt; atexit handlers run before it exits.

Protocol, one line each way. Requests on stdin, JSON: {"id", "argv", "cwd", "env", "stdout", "stderr"}.
Replies on stdout: "started ID PID" once the child exists, "ended ID RETURNCODE" once it has exited
(RETURNCODE as subprocess reports it: the exit status, or minus the signal that ended the child).
End of stdin ends this process; children still running go on.
"""

import os
import sys

# A script's import path starts with its own folder (set per child below), never with this one.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != HERE]
BASE_PATH = list(sys.path)

import atexit  # noqa: E402
import json  # noqa: E402
import runpy  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402

# What every script, or most, imports: the modules worth loading once (torch is ≈ 90% of the time).
import gymnasium  # noqa: E402,F401
import numpy  # noqa: E402,F401
import torch  # noqa: E402,F401
import tyro  # noqa: E402,F401


def exit_status(code) -> int:
    """The status `raise SystemExit(code)` gives an interpreter: None is 0, an int itself, anything else is
    printed to stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def run_child(request: dict, wakeup_fds: tuple) -> None:
    """In the forked child: become `python SCRIPT ARGS` and never return."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in wakeup_fds:
        os.close(fd)
    stdin = os.open(os.devnull, os.O_RDONLY)
    stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # the parent's sys.stdin may hold read-ahead requests
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script = request["argv"][0]
    sys.argv = list(request["argv"])
    sys.path[:] = [os.path.dirname(os.path.abspath(script))] + BASE_PATH
    status, interrupted = 0, False
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_info:
        status = exit_status(exit_info.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        interrupted = True
    except BaseException:  # the interpreter's own rule: print the traceback, exit 1
        traceback.print_exc()
        status = 1
    threading._shutdown()  # what the interpreter does at exit: wait for non-daemon threads, then atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if interrupted:  # as the interpreter does since 3.8: end by the signal, so the parent sees -SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def reply(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve() -> None:
    # SIGCHLD wakes select through this pipe, so an ended child is reported at once
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    request_ids = {}  # pid -> request id of the children still running
    pending = b""
    while True:
        ready, _, _ = select.select([0, wakeup_read], [], [])
        if wakeup_read in ready:
            os.read(wakeup_read, 4096)
        while request_ids:  # reap every child that has ended
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            reply(f"ended {request_ids.pop(pid)} {os.waitstatus_to_exitcode(wait_status)}")
        if 0 in ready:
            data = os.read(0, 65536)  # unbuffered: a child must not inherit requests read ahead
            if not data:
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    try:
                        run_child(request, (wakeup_read, wakeup_write))
                    finally:  # run_child exits; only a failure before the script starts gets here
                        traceback.print_exc()
                        os._exit(1)
                request_ids[pid] = request["id"]
                reply(f"started {request['id']} {pid}")


if __name__ == "__main__":
    serve()
