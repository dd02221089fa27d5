"""Third-party receiving servers for test_peers.py: Postfix's smtp-sink (a real process, its dump files
parsed back into transactions) and aiosmtpd (SMTP with STARTTLS, LMTP over TCP or a unix socket) with a
handler that records every envelope. Run with /usr/bin/python3 (Debian's python3-aiosmtpd)."""
import glob
import os
import signal
import ssl
import subprocess
import threading

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP


class PostfixSink:
    """/usr/sbin/smtp-sink on host:port, each transaction dumped to its own file under dir.
    reject4xx: smtp-sink -r COMMANDS (soft-reject those commands, e.g. "RCPT", "DATA", ".")."""

    def __init__(self, dir, host, port, reject4xx=None, name="sink"):
        self.dir, self.host, self.port = dir, host, port
        os.makedirs(dir, exist_ok=True)
        os.chmod(dir, 0o777)  # smtp-sink writes as nobody
        cmd = ["/usr/sbin/smtp-sink", "-u", "nobody", "-h", name, "-d", os.path.join(dir, "%Y%m%d%H%M%S.")]
        if reject4xx:
            cmd += ["-r", reject4xx]
        self.log = open(os.path.join(os.path.dirname(dir), os.path.basename(dir) + ".log"), "ab")
        self.proc = subprocess.Popen(cmd + ["inet:%s:%d" % (host, port), "64"], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def messages(self):
        """[{"mail": X-Mail-Args, "rcpts": [X-Rcpt-Args], "helo", "data": bytes}] per dump file."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.dir, "*"))):
            with open(path, "rb") as f:
                raw = f.read()
            lines = raw.split(b"\n")
            t = {"rcpts": [], "mail": None, "helo": None, "file": path}
            i = 0
            while i < len(lines) and not lines[i].startswith(b"Received: "):
                k, _, v = lines[i].decode("latin1").partition(": ")
                if k == "X-Mail-Args":
                    t["mail"] = v
                elif k == "X-Rcpt-Args":
                    t["rcpts"].append(v)
                elif k == "X-Helo-Args":
                    t["helo"] = v
                i += 1
            i += 1
            while i < len(lines) and lines[i].startswith(b"\t"):  # rest of smtp-sink's Received header
                i += 1
            body = b"\n".join(lines[i:])
            t["data"] = body[:-2] if body.endswith(b"\n\n") else body  # smtp-sink appends an empty line
            out.append(t)
        return out

    def messages_to(self, addr):
        return [t for t in self.messages() if ("<%s>" % addr) in t["rcpts"]]

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.log.close()


class Recorder:
    """aiosmtpd handler: records (mail_from, rcpt_tos, content, tls cipher or None, helo) per DATA.
    LMTP: one reply per recipient from reply_for(rcpt) (default 250)."""

    def __init__(self, reply_for=None):
        self.lock = threading.Lock()
        self.tx = []
        self.reply_for = reply_for

    async def handle_DATA(self, server, session, envelope):
        cipher = session.ssl.get("cipher") if session.ssl else None
        with self.lock:
            self.tx.append({"mail": envelope.mail_from, "rcpts": list(envelope.rcpt_tos),
                            "data": envelope.original_content or envelope.content, "tls": cipher,
                            "helo": session.host_name, "mail_options": list(envelope.mail_options)})
        if self.reply_for and isinstance(server, LMTP):
            return "\r\n".join(self.reply_for(r) for r in envelope.rcpt_tos)
        return "250 2.0.0 recorded"

    def messages_to(self, addr):
        with self.lock:
            return [t for t in self.tx if addr in t["rcpts"]]


class _LmtpTcp(Controller):
    def factory(self):
        return LMTP(self.handler, **self.SMTP_kwargs)


class _LmtpUnix(UnixSocketController):
    def factory(self):
        return LMTP(self.handler, **self.SMTP_kwargs)


def aio_smtp(handler, host, port, cert=None, key=None):
    """aiosmtpd SMTP server; with cert/key it offers STARTTLS and requires it before MAIL."""
    kw = {}
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        kw = {"tls_context": ctx, "require_starttls": True}
    c = Controller(handler, hostname=host, port=port, server_hostname="aiosmtpd.test", ident="aiosmtpd test", **kw)
    c.start()
    return c


def aio_lmtp_tcp(handler, host, port):
    c = _LmtpTcp(handler, hostname=host, port=port, server_hostname="lmtp.test")
    c.start()
    return c


def aio_lmtp_unix(handler, path):
    c = _LmtpUnix(handler, unix_socket=path, server_hostname="lmtp.test")
    c.start()
    os.chmod(path, 0o666)  # mta-smtp connects as smtp_user from its chroot
    return c

