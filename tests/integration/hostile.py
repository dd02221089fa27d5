"""Shared by the hostile-input suites (test_hostile*.py): an MTA instance with plain, submission and smtps
listeners, TLS and AUTH; sessions on each; a crash/restart watchdog for mta-smtpd."""
import base64
import os
import re
import socket
import subprocess

from mtatest import BIN, MTA, check, free_port
from test_smtpd import OUTSIDE, Client, TlsClient, client_ctx


def make_instance():
    m = MTA(name="hostile", smtpd_processes=1)
    m.sub_port, m.smtps_port = free_port(), free_port()
    m.cert, m.key = os.path.join(m.dir, "cert.pem"), os.path.join(m.dir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", m.key, "-out", m.cert, "-days", "2", "-subj", "/CN=mx.test.example",
                    "-addext", "subjectAltName=DNS:mx.test.example,IP:127.0.0.1"], check=True, capture_output=True)
    users = os.path.join(m.dir, "users.txt")
    with open(users, "w") as f:
        f.write("alice:wonderland\nbob:builder\n")
    r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", "auth", users], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("mtamap failed: " + r.stderr)
    with open(m.conf, "a") as f:
        f.write("mynetworks = 127.0.0.1/32\nsubmission_listen = 127.0.0.1:%d\nsmtps_listen = 127.0.0.1:%d\n"
                "tls_cert = %s\ntls_key = %s\nauth_users = %s\nsmtpd_auth_failure_delay = 0\n"
                "smtpd_auth_failure_limit = 10\n"
                % (m.sub_port, m.smtps_port, m.cert, m.key, os.path.join(m.dir, "users.lmdb")))
    return m.start()


class Health:
    """The same mta-smtpd processes as at the start, and no crash report in the log."""

    def __init__(self, m):
        self.m, self.pids = m, sorted(m.pids("mta-smtpd"))

    def check(self, what):
        log = self.m.log_text()
        bad = [line for line in log.splitlines()
               if re.search(r"signal=\d|AddressSanitizer|runtime error:|LeakSanitizer", line)]
        pids = sorted(self.m.pids("mta-smtpd"))
        check("alive after %s: smtpd not restarted, no crash in the log" % what,
              pids == self.pids and not bad and self.m.proc.poll() is None, (self.pids, pids, bad[:3]))


def tls_session(m, port=None, src=OUTSIDE, login=None):
    """Submission session inside STARTTLS (optionally authenticated)."""
    c = TlsClient(port or m.sub_port, src)
    c.last()
    c.cmd("EHLO client.test.example")
    c.cmd("STARTTLS")
    c.starttls(m)
    c.cmd("EHLO client.test.example")
    if login:
        c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0%s\0%s" % login).decode())
    return c


def smtps_session(m, src=OUTSIDE):
    c = Client(m.smtps_port, src)
    c.s = client_ctx(m).wrap_socket(c.s, server_hostname="mx.test.example")
    c.last()
    c.cmd("EHLO client.test.example")
    return c


def raw_session(m, payload, src=OUTSIDE, port=None):
    """Sends payload in one write, reads everything until the server closes (the payload ends in QUIT)."""
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port or m.port))
    s.sendall(payload)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        out += b"<timeout>"
    s.close()
    return out


def run_all(m, fns):
    """Runs each scenario (an exception is a FAIL line), then checks that mta-smtpd survived it."""
    h = Health(m)
    for fn in fns:
        try:
            fn(m)
        except Exception as e:  # noqa: BLE001 - any surprise is a test failure
            check(fn.__name__, False, "%s: %s" % (type(e).__name__, e))
        h.check(fn.__name__)
