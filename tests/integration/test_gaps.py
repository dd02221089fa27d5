"""The small gaps users hit first (issue 10): every program answers --version and --help.
The per-client limit exemptions are in test_limits.py."""
import os
import re
import subprocess

from mtatest import BIN, check, finish
from test_smtpd import attempt

ROLES = ("mta-smtpd", "mta-queue", "mta-smtp", "mta-local", "mta-resolver")


def programs():
    return sorted(n for n in os.listdir(BIN) if n != "unit-tests" and os.access(os.path.join(BIN, n), os.X_OK))


def run(name, *args):
    # close_fds (the default): a role daemon run by hand has no fd 3 and must answer before it looks.
    return subprocess.run([os.path.join(BIN, name)] + list(args), capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def versions():
    names = programs()
    check("programs: all fourteen are there", len(names) >= 14 and all(r in names for r in ROLES), names)
    seen = set()
    for n in names:
        r = run(n, "--version")
        lines = r.stdout.splitlines()
        ok = r.returncode == 0 and len(lines) == 1 and re.fullmatch(re.escape(n) + r" [A-Za-z0-9._+~-]+", lines[0])
        check("%s --version: one line NAME VERSION, exit 0" % n, ok and not r.stderr, (r.returncode, r.stdout, r.stderr))
        if lines:
            seen.add(lines[0].split(" ", 1)[-1])
        r = run(n, "--help")
        check("%s --help: usage on stdout, exit 0" % n, r.returncode == 0 and r.stdout.startswith("usage: ") and
              n in r.stdout.splitlines()[0] and not r.stderr, (r.returncode, r.stdout, r.stderr))
        r = run(n, "--no-such-option")
        want = 64 if n == "sendmail" else 2  # sendmail keeps sysexits' EX_USAGE
        check("%s --no-such-option: usage on stderr, exit %d" % (n, want),
              r.returncode == want and "usage: " in r.stderr and not r.stdout, (r.returncode, r.stdout, r.stderr))
    check("programs: one version for all", len(seen) == 1, seen)
    # The long options must not reach sendmail's own parser, wherever they stand among its options.
    r = run("sendmail", "-t", "-i", "--version")
    check("sendmail -t -i --version", r.returncode == 0 and r.stdout.startswith("sendmail "), (r.stdout, r.stderr))


def main():
    attempt(versions)
    finish()


if __name__ == "__main__":
    main()
