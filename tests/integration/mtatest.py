"""Shared helpers for the integration tests: start the real mtad from the build tree with a generated
config in a temp dir on free loopback ports, talk to it with real clients, and report PASS/FAIL lines.
Run with /usr/bin/python3 (Debian's, so python3-aiosmtpd is importable); stdlib otherwise.

Isolation, so that suites can run side by side (tests/run-all runs several at once):
- every temp file of a suite lives under one directory, TMP_ROOT (TMPDIR points there for the suite
  and its children); finish() removes it when the suite passed;
- ports come from the suite's own block below the kernel's ephemeral range (MTA_TEST_SLOT, given by
  run-all), so no other suite and no client socket can take a port between the choice and the bind."""
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MTA_BIN_DIR", os.path.join(ROOT, "build", "bin"))
FAILED = 0

# World-traversable (chrooted roles and tools run as other users reach their files through it). Under
# tests/run-all (MTA_TEST_SLOT set) the name is short: unix socket paths below it must fit 108 bytes.
TMP_ROOT = tempfile.mkdtemp(prefix="t" if os.environ.get("MTA_TEST_SLOT") else
                            "mtatest-%s-" % os.path.splitext(os.path.basename(sys.argv[0]))[0])
os.chmod(TMP_ROOT, 0o755)
os.environ["TMPDIR"] = TMP_ROOT
tempfile.tempdir = TMP_ROOT

# smtplib names the client by socket.getfqdn() unless told otherwise: a reverse lookup of this host's
# name, which on a fresh root whose /etc/hosts lacks it goes to DNS and, with twenty clients at once,
# took 5 s per connection (fresh-check: the skeleton's concurrency step ran 6 minutes instead of 15 s).
# Tests never depend on the host's resolver: every client says EHLO client.test.example unless a test
# names another.
_smtp_init = smtplib.SMTP.__init__


def _smtp_init_named(self, host="", port=0, local_hostname=None, *args, **kwargs):
    _smtp_init(self, host, port, local_hostname or "client.test.example", *args, **kwargs)


smtplib.SMTP.__init__ = _smtp_init_named


def check(name, ok, detail=""):
    """One result line; the suite runner counts them."""
    global FAILED
    if ok:
        print("PASS %s" % name, flush=True)
    else:
        FAILED += 1
        print("FAIL %s: %s" % (name, detail), flush=True)
    return ok


def cleanup_tmp():
    """Removes TMP_ROOT unless the suite failed (kept for a look at the logs) or MTA_TEST_KEEP is set."""
    if FAILED or os.environ.get("MTA_TEST_KEEP"):
        print("temp files kept in %s" % TMP_ROOT, flush=True)
    else:
        shutil.rmtree(TMP_ROOT, ignore_errors=True)


def finish():
    """Exit with the suite's status."""
    cleanup_tmp()
    sys.exit(1 if FAILED else 0)


# Ports: 10000-32767 lies below Linux's ephemeral range (32768-60999), so only other tests choose
# them, and each suite has a block of its own. Run alone (no slot), a suite takes a block by its pid.
PORTS_PER_SLOT = 200
_slot = int(os.environ.get("MTA_TEST_SLOT", os.getpid() % 100))
_next_port = 10000 + (_slot % 113) * PORTS_PER_SLOT


def _bindable(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(*hosts):
    """The next port of this suite's block that every given host (default 127.0.0.1) can bind."""
    global _next_port
    hosts = hosts or ("127.0.0.1",)
    end = 10000 + (_slot % 113 + 1) * PORTS_PER_SLOT
    while _next_port < end:
        port = _next_port
        _next_port += 1
        if all(_bindable(h, port) for h in hosts):
            return port
    raise RuntimeError("test slot %d has no free port left" % _slot)


_user_bin = None


def as_user(user, cmd):
    """cmd run as `user` through runuser. A program of the build tree is run from a copy in a world-
    readable directory: the checkout may sit where other users cannot enter (/root/project, 0700)."""
    global _user_bin
    if not user:
        return list(cmd)
    prog = os.fsdecode(cmd[0])
    if os.path.dirname(os.path.abspath(prog)) == os.path.abspath(BIN):
        if _user_bin is None:
            _user_bin = tempfile.mkdtemp(prefix="bin-")
            os.chmod(_user_bin, 0o755)
        copy = os.path.join(_user_bin, os.path.basename(prog))
        if not os.path.exists(copy):
            shutil.copy2(prog, copy)
        prog = copy
    head = [b"runuser", b"-u", user.encode(), b"--"] if isinstance(cmd[0], bytes) else ["runuser", "-u", user, "--"]
    first = os.fsencode(prog) if isinstance(cmd[0], bytes) else prog
    return head + [first] + list(cmd[1:])


class Guard:
    """`with Guard("client") as g:` around a suite's body. An exception inside becomes one FAIL line
    `client_exception` with the end of g.log.log_text() (set g.log to the MTA or process under test);
    then g.cleanups run in order, each on its own, on success and failure alike."""

    def __init__(self, name, tail=3000):
        self.name, self.tail, self.log, self.cleanups = name, tail, None, []

    def __enter__(self):
        return self

    def __exit__(self, etype, e, tb):
        if isinstance(e, Exception):
            check(self.name + "_exception", False, "%s: %s" % (type(e).__name__, e))
            if self.log is not None:
                print(self.log.log_text()[-self.tail:])
        for fn in self.cleanups:
            try:
                fn()
            except Exception as ce:  # noqa: BLE001 - the others still run
                print("cleanup failed: %s" % ce)
        return isinstance(e, Exception)


def stop_group(proc, timeout=10):
    """SIGTERM to the process group of `proc` (a peer started with start_new_session), SIGKILL if it
    is not gone within `timeout`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(cond, timeout=10.0, interval=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    return cond()


def delivery_events(m, addr):
    """(event, relay, text) per delivery outcome logged for a recipient, oldest first: mta-smtp and
    mta-local log reply=, the queue's own decisions (transport_map error:/retry:, table trouble) reason=."""
    import re
    pat = re.compile(r"event=(delivered|deferred|bounced) qid=\S+ (?:to|rcpt)=<%s> relay=(\S+) (?:class=\S+ )?"
                     r"(?:reply|reason)=\"([^\"]*)\"" % re.escape(addr))
    return pat.findall(m.log_text())


def first_delivery_event(m, addr, timeout=20):
    r = wait_for(lambda: delivery_events(m, addr), timeout)
    return r[0] if r else (None, None, None)


class MTA:
    """A running mtad with its own spool, Maildir root and ports."""

    def __init__(self, extra="", smtpd_processes=2, name="mta", msgauth_verify=False):
        self.dir = tempfile.mkdtemp(prefix="%s-" % name)
        # Chrooted roles must be able to reach their directories.
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.spool = os.path.join(self.dir, "spool")
        self.maildir = os.path.join(self.dir, "mail")
        self.conf = os.path.join(self.dir, "mta.conf")
        self.log_path = os.path.join(self.dir, "mtad.log")
        with open(self.conf, "w") as f:
            f.write("# generated by tests/integration/mtatest.py\n"
                    "hostname = mx.test.example\n"
                    "smtp_listen = 127.0.0.1:%d\n"
                    "spool_dir = %s\nmail_dir = %s\n"
                    "smtpd_processes = %d\n"
                    "minimal_backoff_time = 1s\n"
                    # Verifying mail from outside clients (127.0.0.9) asks the DNS about their domains,
                    # which tests have only where they serve a zone: the suites about it turn it on.
                    "msgauth_verify = %s\n"
                    "%s\n" % (self.port, self.spool, self.maildir, smtpd_processes,
                               "yes" if msgauth_verify else "no", extra))
        self.proc = None

    def start(self, wait=True, env=None):
        """env: variables added to mtad's environment (its roles inherit them), e.g. MTA_CRASH_POINT."""
        self.log = open(self.log_path, "ab")
        self.log_start = self.log.tell()
        self.proc = subprocess.Popen([os.path.join(BIN, "mtad"), "-c", self.conf, "-d"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, **env) if env else None)
        if wait and not wait_for(self.ready, 20):
            raise RuntimeError("mtad did not become ready; log:\n" + self.log_text()[-4000:])
        return self

    def ready(self):
        """Ready when every role has said HELLO to this mtad (so each has dropped its privileges and
        serves: mtad logs event=all_ready) and a client gets its 220."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                if b"event=all_ready" not in f.read():
                    return False
        except OSError:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def reconfigure(self, text):
        """Appends settings to the config file (the last setting of a key wins) and reloads mtad."""
        with open(self.conf, "a") as f:
            f.write(text)
        r = self.ctl("reload")
        if r.returncode != 0:
            raise RuntimeError("reload failed: " + r.stdout + r.stderr)

    def ctl(self, *args):
        return subprocess.run([os.path.join(BIN, "mtactl"), "-c", self.conf] + list(args),
                              capture_output=True, text=True, timeout=30)

    def pids(self, program):
        """Pids of a role program belonging to this instance (children of our mtad)."""
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % p) as f:
                    st = f.read()
                comm = st[st.index("(") + 1:st.rindex(")")]
                state, ppid = st[st.rindex(")") + 2:].split()[:2]
                ppid = int(ppid)
            except (OSError, ValueError):
                continue
            # A killed child stays a zombie until mtad reaps it: it is not a running role.
            if comm == program[:15] and self.proc and ppid == self.proc.pid and state != "Z":
                out.append(int(p))
        return out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def mailbox(self, user):
        d = os.path.join(self.maildir, user, "new")
        try:
            return sorted(os.path.join(d, n) for n in os.listdir(d))
        except OSError:
            return []

    def all_messages(self):
        """Every delivered message file under the Maildir root."""
        out = []
        if not os.path.isdir(self.maildir):
            return out
        for user in os.listdir(self.maildir):
            out.extend(self.mailbox(user))
        return out
