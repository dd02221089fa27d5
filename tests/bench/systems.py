"""The systems the benchmark drives: a Postfix smtp-sink that counts what arrives, our MTA (mtad from
the build tree, serving /metrics when asked to) and a private Postfix instance, both relaying everything
to the sink. Each lives in its own temp dir on loopback ports and is stopped by the harness, also on
failure. For the DKIM workloads both sign with the same key made by openssl: ours in mta-msgauth,
Postfix through OpenDKIM as a milter. For the milter workload both pass every session and message
through the same accept-all milter (accept_milter.py, python3-milter)."""
import base64
import email.parser
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import procstat


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def greets(port, timeout=2.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(512).startswith(b"220")
    except OSError:
        return False


def wait_until(cond, timeout, interval=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


class HarnessError(Exception):
    pass


def start_listener(cmd, log, port, timeout, what):
    """Starts `cmd` (its own process group, output to the open file `log`) and waits until it accepts
    connections on 127.0.0.1:`port`; HarnessError with the end of its log when it exits or times out."""
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    if not wait_until(lambda: proc.poll() is not None or listening(), timeout) or proc.poll() is not None:
        log.flush()
        with open(log.name, "rb") as f:
            raise HarnessError("%s did not start: %s" % (what, f.read().decode("latin-1")[-1000:]))
    return proc


def stop_process(proc, grace, group=False):
    """SIGTERM, then after `grace` seconds SIGKILL (to its whole process group with `group`)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()


class DkimKey:
    """A signing key for DOMAIN, selector `bench`, made with openssl (not with our own mtadkim), and the
    public key record a verifier would find in DNS."""
    selector = "bench"

    def __init__(self, workdir, alg, domain):
        self.alg, self.domain = alg, domain
        self.path = os.path.join(workdir, "%s.%s.%s.key" % (domain, self.selector, alg))
        gen = (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if alg == "rsa"
               else ["-algorithm", "ED25519"])
        r = subprocess.run(["openssl", "genpkey"] + gen + ["-out", self.path], capture_output=True, text=True)
        if r.returncode != 0:
            raise HarnessError("openssl genpkey %s failed: %s" % (alg, r.stderr.strip()))
        os.chmod(self.path, 0o600)
        der = subprocess.run(["openssl", "pkey", "-in", self.path, "-pubout", "-outform", "DER"],
                             capture_output=True).stdout
        # RSA: p= is the SubjectPublicKeyInfo; Ed25519 (RFC 8463): the bare 32-byte key that ends it.
        pub = der if alg == "rsa" else der[-32:]
        self.record = "v=DKIM1; k=%s; p=%s" % ("rsa" if alg == "rsa" else "ed25519",
                                               base64.b64encode(pub).decode())
        self.algorithm = "rsa-sha256" if alg == "rsa" else "ed25519-sha256"

    def dns(self, name, timeout=5):
        """dkimpy's dnsfunc: the record for our selector, nothing for any other name."""
        want = "%s._domainkey.%s." % (self.selector, self.domain)
        n = name.decode() if isinstance(name, bytes) else name
        return self.record.encode() if n.rstrip(".") + "." == want else None


def check_signed(dump_dir, key, sample=40):
    """Every message the sink dumped carries a DKIM-Signature of `key`'s domain and algorithm, and a
    sample of them verifies with dkimpy (python3-dkim) against the public key. Returns (messages,
    verified); raises HarnessError on the first message that is unsigned or does not verify."""
    import dkim  # python3-dkim; imported here so the unsigned workloads do not need it
    names = sorted(os.listdir(dump_dir))
    verified = 0
    for i, name in enumerate(names):
        with open(os.path.join(dump_dir, name), "rb") as f:
            raw = f.read()
        # Drop smtp-sink's own X-Client-*/X-Helo-*/X-Mail-*/X-Rcpt-* lines and its trailing empty line.
        lines = raw.split(b"\n")
        while lines and lines[0].startswith((b"X-Client-", b"X-Helo-", b"X-Mail-", b"X-Rcpt-")):
            lines.pop(0)
        if lines and lines[-1] == b"":
            lines.pop()
        if lines and lines[-1] == b"":
            lines.pop()
        msg = b"\r\n".join(l.rstrip(b"\r") for l in lines) + b"\r\n"
        head = email.parser.BytesHeaderParser().parsebytes(msg)
        sigs = [str(v) for v in head.get_all("DKIM-Signature") or []]
        tags = [{t.split("=", 1)[0].strip(): t.split("=", 1)[1].strip() for t in "".join(s.split()).split(";")
                 if "=" in t} for s in sigs]
        if not any(t.get("d") == key.domain and t.get("a") == key.algorithm for t in tags):
            raise HarnessError("message %s from the sink has no %s signature for d=%s (DKIM-Signature: %s)"
                               % (name, key.algorithm, key.domain, sigs or "none"))
        if i % max(1, len(names) // sample) == 0:
            if not dkim.verify(msg, dnsfunc=key.dns):
                raise HarnessError("message %s from the sink does not verify with dkimpy" % name)
            verified += 1
    return len(names), verified


class Sink:
    """smtp-sink on a fresh port; `count()` reads its running `mesg=N` counter. With `dump`, every
    message is also written to a file of its own in `dump_dir` (the DKIM workloads check them)."""

    def __init__(self, workdir, dump=False):
        self.port = free_port()
        self.out_path = os.path.join(workdir, "sink-%d.out" % self.port)
        self.dump_dir = os.path.join(workdir, "sink-%d.dump" % self.port) if dump else None
        self.proc = None

    def start(self):
        self.out = open(self.out_path, "wb")
        # -u nobody: it refuses to run as root otherwise; -m: more parallel sessions than any client uses.
        cmd = ["smtp-sink", "-c", "-m", "1024", "127.0.0.1:%d" % self.port, "1024"]
        if self.dump_dir:
            os.makedirs(self.dump_dir)
            if os.geteuid() == 0:
                shutil.chown(self.dump_dir, "nobody")
            cmd[1:1] = ["-d", os.path.join(self.dump_dir, "m.")]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "nobody"]
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(lambda: greets(self.port) or self.proc.poll() is not None, 10) or self.proc.poll() is not None:
            raise HarnessError("smtp-sink did not start: %s" % self.tail())
        return self

    def tail(self, n=300):
        try:
            with open(self.out_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("latin-1")
        except OSError:
            return ""

    def count(self):
        """Messages received (final dots), from the last counter line."""
        last = self.tail(120).replace("\n", "\r").split("\r")
        for line in reversed(last):
            for field in line.split():
                if field.startswith("mesg="):
                    try:
                        return int(field[5:])
                    except ValueError:
                        pass
        return 0

    def stop(self):
        if self.proc:
            stop_process(self.proc, 5)
            self.out.close()
        self.proc = None


class AcceptMilter:
    """accept_milter.py (python3-milter, Debian's libmilter) in the foreground on a loopback port: the
    same accept-all milter in front of either system. Counts every callback into a JSON stats file."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accept_milter.py")

    def __init__(self, dir):
        self.port = free_port()
        self.spec = "inet:127.0.0.1:%d" % self.port  # how both MTAs name it in smtpd_milters
        self.stats_path = os.path.join(dir, "milter-stats.json")
        self.log_path = os.path.join(dir, "milter.log")
        self.proc = None

    def start(self, timeout=10):
        self.log = open(self.log_path, "ab")
        # Debian's python3 (the one python3-milter is built for), not whatever python3 is first on PATH.
        self.proc = start_listener(["/usr/bin/python3", self.script, "inet:%d@127.0.0.1" % self.port, self.stats_path],
                                   self.log, self.port, timeout, "accept_milter.py")
        return self

    def log_tail(self, n=1000):
        try:
            self.log.flush()
            with open(self.log_path, "rb") as f:
                return f.read().decode("latin-1")[-n:]
        except (OSError, ValueError):
            return ""

    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def stats(self):
        """The milter's callback counts as last written (a few times a second)."""
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stop(self):
        if self.proc:
            stop_process(self.proc, 10)  # SIGTERM: libmilter stops within about a second
            self.log.close()
        self.proc = None


class OurMTA:
    name = "ours"
    smtpd_comm = "mta-smtpd"

    signer_comm = "mta-msgauth"

    def __init__(self, workdir, sink_port, bindir, dkim=None, metrics=False, milter=False):
        self.dir = os.path.join(workdir, "ours-%d" % sink_port)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)  # chrooted roles must traverse it
        self.port = free_port()
        self.bindir = bindir
        self.conf = os.path.join(self.dir, "mta.conf")
        self.log_path = os.path.join(self.dir, "mtad.log")
        extra = ""
        if dkim:
            # The client is in mynetworks, so everything it sends with From: @DOMAIN gets signed.
            table = os.path.join(self.dir, "dkim_keys")
            with open(table, "w") as f:
                f.write("%s %s %s %s\n" % (dkim.domain, dkim.selector, dkim.alg, dkim.path))
            r = subprocess.run([os.path.join(bindir, "mtamap"), "-t", "dkim", table], capture_output=True, text=True)
            if r.returncode != 0:
                raise HarnessError("mtamap -t dkim %s failed: %s" % (table, r.stderr.strip()))
            extra = "dkim_keys = %s.lmdb\n" % table
        # The metrics-cost workload: mta-metrics serves /metrics on this port (None: metrics off).
        self.metrics_port = free_port() if metrics else None
        if metrics:
            extra += "metrics_listen = 127.0.0.1:%d\n" % self.metrics_port
        # The milter workload: every session through accept_milter.py (None: no milter).
        self.milter = AcceptMilter(self.dir) if milter else None
        if milter:
            extra += "smtpd_milters = %s\nmilter_default_action = tempfail\n" % self.milter.spec
        with open(self.conf, "w") as f:
            f.write("# generated by tests/bench/bench.py\n"
                    "hostname = bench.test\n"
                    "smtp_listen = 127.0.0.1:%d\n"
                    "spool_dir = %s/spool\n"
                    "mail_dir = %s/mail\n"
                    "relayhost = [127.0.0.1]:%d\n"
                    "mynetworks = 127.0.0.0/8\n"
                    "local_domains = localhost\n" % (self.port, self.dir, self.dir, sink_port) + extra)
        self.proc = None

    def launch(self):
        """Starts mtad and returns at once, without waiting for anything (start() waits for the 220; the
        backlog workload times a restart itself from just before this)."""
        mtad = os.path.join(self.bindir, "mtad")
        if not os.access(mtad, os.X_OK):
            raise HarnessError("%s is missing (run make all)" % mtad)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([mtad, "-c", self.conf, "-d"], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def start(self, timeout=30):
        if self.milter:
            self.milter.start()
        self.launch()
        ok = wait_until(lambda: self.proc.poll() is not None or greets(self.port), timeout, 0.1)
        if not ok or self.proc.poll() is not None:
            raise HarnessError("our mtad did not answer 220 on port %d within %ds; log tail:\n%s"
                               % (self.port, timeout, self.log_tail()))
        # The first 220 can come before every role is up; give the chain a moment (not fatal).
        wait_until(lambda: all(("role=%s" % r) in self.log_text() for r in ("queue", "smtpd", "smtp")), 5, 0.1)
        return self

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=3000):
        return self.log_text()[-n:]

    def root_pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def procs(self):
        """The processes whose CPU and memory count: everything below mtad, and the milter if any."""
        root = self.root_pid()
        if not root:
            return {}
        snap = procstat.snapshot()
        out = procstat.tree(root, snap)
        if out and self.milter and self.milter.pid():
            out.update(procstat.tree(self.milter.pid(), snap))
        return out

    def diagnose(self):
        """A few log lines that may explain a failure: warnings, errors, crashed roles."""
        bad = [l for l in self.log_text().splitlines()
               if "level=warn" in l or "level=error" in l or "level=crit" in l or "signal=" in l]
        crashes = sum(1 for l in bad if "event=child_exit" in l and "signal=" in l)
        head = "our log (%s): %d warning/error lines, %d roles killed by a signal" % (self.log_path, len(bad), crashes)
        return "\n".join([head] + bad[:3] + (["..."] if len(bad) > 6 else []) + bad[3:][-3:]
                         + (["milter log: %s" % self.milter.log_path] if self.milter else []))

    def stop(self):
        try:
            if self.proc:
                stop_process(self.proc, 30, group=True)
                self.log.close()
                self.proc = None
        finally:
            if self.milter:
                self.milter.stop()


MASTER_CF = """\
# generated by tests/bench/bench.py: upstream defaults without chroot, smtpd on a private port.
# smtpd maxproc is 1100 (instead of default_process_limit=100) so the 1,000-idle-connections
# workload really holds 1,000 sessions; the throughput workloads never use more than 20.
127.0.0.1:{port} inet n - n - 1100 smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# generated by tests/bench/bench.py: a private instance relaying everything to the sink.
# Everything not set here (concurrency, process limits, fsync of queue files) is the Debian default.
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/spool
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = bench-postfix.test
mydomain = test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
relayhost = [127.0.0.1]:{sink}
mynetworks = 127.0.0.0/8
append_dot_mydomain = no
biff = no
"""


OPENDKIM_CONF = """\
# generated by tests/bench/bench.py: sign everything from 127.0.0.0/8 with From: @{domain}.
Syslog no
Mode s
Domain {domain}
Selector {selector}
KeyFile {key}
SignatureAlgorithm {algorithm}
Canonicalization relaxed/relaxed
OversignHeaders From
InternalHosts 127.0.0.0/8
Socket inet:{port}@127.0.0.1
UserID opendkim
RequireSafeKeys no
"""


class OpenDkim:
    """Debian's opendkim in the foreground as Postfix's signing milter, with the harness's key."""
    comm = "opendkim"

    def __init__(self, dir, key):
        self.port = free_port()
        self.conf = os.path.join(dir, "opendkim.conf")
        self.log_path = os.path.join(dir, "opendkim.log")
        # It runs as its own user and refuses a key it cannot read; a copy it owns keeps ours private.
        self.key = os.path.join(dir, os.path.basename(key.path))
        shutil.copy(key.path, self.key)
        shutil.chown(self.key, "opendkim")
        with open(self.conf, "w") as f:
            f.write(OPENDKIM_CONF.format(domain=key.domain, selector=key.selector, key=self.key,
                                         algorithm=key.algorithm, port=self.port))
        self.proc = None

    def start(self, timeout=10):
        self.log = open(self.log_path, "ab")
        self.proc = start_listener(["opendkim", "-f", "-x", self.conf], self.log, self.port, timeout, "opendkim")
        return self

    def stop(self):
        if self.proc:
            stop_process(self.proc, 10)
            self.log.close()
        self.proc = None


class Postfix:
    name = "postfix"
    smtpd_comm = "smtpd"
    signer_comm = OpenDkim.comm

    def __init__(self, workdir, sink_port, dkim=None, milter=False):
        self.dir = os.path.join(workdir, "postfix-%d" % sink_port)
        self.etc = os.path.join(self.dir, "etc")
        for sub in ("etc", "spool", "data"):
            os.makedirs(os.path.join(self.dir, sub))
        os.chmod(self.dir, 0o755)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self.port = free_port()
        self.opendkim = OpenDkim(self.dir, dkim) if dkim else None
        self.milter = AcceptMilter(self.dir) if milter else None
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(d=self.dir, sink=sink_port))
            if self.opendkim:
                # As the OpenDKIM README sets it up; tempfail so that a milter failure shows as one.
                f.write("smtpd_milters = inet:127.0.0.1:%d\nmilter_default_action = tempfail\n"
                        % self.opendkim.port)
            if self.milter:
                # The accept-all milter: protocol 6 (libmilter's, and Postfix 3.x's default, spelled out),
                # tempfail so that a milter failure shows as a failed run rather than as unfiltered mail.
                f.write("smtpd_milters = %s\nmilter_protocol = 6\nmilter_default_action = tempfail\n"
                        % self.milter.spec)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        self.master = None
        self.started = False

    def postfix(self, *args, timeout=60):
        return subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, timeout=30):
        if self.opendkim:
            self.opendkim.start()
        if self.milter:
            self.milter.start()
        r = self.postfix("start")
        self.started = True
        pidfile = os.path.join(self.dir, "spool", "pid", "master.pid")

        def master_pid():
            try:
                with open(pidfile) as f:
                    return int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                return None
        if r.returncode != 0 or not wait_until(lambda: master_pid() is not None, 10):
            raise HarnessError("postfix start failed (rc=%d): %s %s\n%s" % (r.returncode, r.stdout, r.stderr,
                                                                           self.log_tail()))
        self.master = master_pid()
        if not wait_until(lambda: greets(self.port), timeout, 0.1):
            raise HarnessError("postfix smtpd did not answer 220 on port %d; log:\n%s" % (self.port, self.log_tail()))
        return self

    def log_tail(self, n=3000):
        try:
            with open(os.path.join(self.dir, "maillog"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def root_pid(self):
        return self.master if self.master and procstat.alive(self.master) else None

    def procs(self):
        """Everything below Postfix's master, and OpenDKIM or the milter when it runs for it."""
        snap = procstat.snapshot()
        root = self.root_pid()
        out = procstat.tree(root, snap) if root else {}
        if out and self.opendkim and self.opendkim.proc:
            out.update(procstat.tree(self.opendkim.proc.pid, snap))
        if out and self.milter and self.milter.pid():
            out.update(procstat.tree(self.milter.pid(), snap))
        return out

    def diagnose(self):
        bad = [l for l in self.log_tail(200000).splitlines()
               if any(w in l for w in ("warning:", "fatal:", "panic:", "error:", "status=deferred", "status=bounced"))]
        return "\n".join(["postfix log (%s/maillog): %d warning/error lines" % (self.dir, len(bad))] + bad[-5:]
                         + (["opendkim log: %s" % self.opendkim.log_path] if self.opendkim else [])
                         + (["milter log: %s" % self.milter.log_path] if self.milter else []))

    def stop(self):
        try:
            self.stop_postfix()
        finally:
            if self.opendkim:
                self.opendkim.stop()
            if self.milter:
                self.milter.stop()

    def stop_postfix(self):
        if not self.started:
            return
        self.started = False
        try:
            self.postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if self.master and not procstat.wait_gone(self.master, 20):
            # Graceful stop failed: kill the whole tree.
            for pid in procstat.tree(self.master):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            procstat.wait_gone(self.master, 5)
        if self.master:
            try:  # the harness is a child subreaper, so the daemonized master is ours to reap
                os.waitpid(self.master, os.WNOHANG)
            except ChildProcessError:
                pass
        self.master = None
