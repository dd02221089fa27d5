"""Shared by the queue suites (test_queue.py, test_queue_admin.py): a scripted receiving SMTP server
used as the relayhost, and small helpers around mtaqueue, SMTP submission and DSN parsing."""
import collections
import email
import email.policy
import json
import os
import re
import smtplib
import socket
import subprocess
import threading
import time

from mtatest import as_user, BIN


class ScriptedServer:
    """A tiny SMTP server: decide(rcpt, attempt_number) gives each RCPT reply; records everything."""

    def __init__(self, decide=None):
        self.decide = decide or (lambda rcpt, n: "250 2.1.5 ok")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.attempts = collections.Counter()
        self.sessions = []          # (mail_from, [rcpts offered])
        self.delivered = []         # (mail_from, [rcpts accepted], data)
        self.message_ids = collections.Counter()   # Message-ID -> bodies received in full (acked or not)
        # data_fault(accepted, n) -> None (accept), "drop-354", "drop-body", "drop-dot" or a reply to the
        # final dot; n counts the DATA commands whose first accepted recipient is accepted[0].
        self.data_fault = None
        self.data_attempts = collections.Counter()
        self.faults = collections.Counter()        # action -> times it was carried out
        self.extensions = []        # extra EHLO keywords, e.g. ["DSN"]
        self.commands = []          # every MAIL/RCPT command line as received
        self.peers = []             # the client address of every session
        self.helos = []             # every EHLO/HELO line
        self.conn_tx = []           # per closed connection: how many messages it carried
        self.delivered_via = []     # per delivered message: (client address, its EHLO name)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        peer, helo = None, None
        try:
            peer = conn.getpeername()[0]
            with self.lock:
                self.peers.append(peer)
        except OSError:
            pass
        f = conn.makefile("rb")
        carried = 0
        out = lambda s: conn.sendall(s.encode() + b"\r\n")
        try:
            out("220 sink.test ESMTP")
            mail, offered, accepted = None, [], []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode("ascii", "replace").strip()
                verb = cmd[:4].upper()
                if verb in ("MAIL", "RCPT"):
                    with self.lock:
                        self.commands.append(cmd)
                if verb in ("EHLO", "HELO"):
                    helo = cmd[5:].strip().lower()
                    with self.lock:
                        self.helos.append(cmd)
                    out("".join("250-%s\r\n" % e for e in ["sink.test", "PIPELINING", "8BITMIME"] + self.extensions)
                        + "250 ENHANCEDSTATUSCODES")
                elif verb == "MAIL":
                    mail, offered, accepted = re.search(r"<(.*?)>", cmd).group(1), [], []
                    out("250 2.1.0 ok")
                elif verb == "RCPT":
                    rcpt = re.search(r"<(.*?)>", cmd).group(1)
                    with self.lock:
                        self.attempts[rcpt] += 1
                        n = self.attempts[rcpt]
                        offered.append(rcpt)
                    reply = self.decide(rcpt, n)
                    if reply.startswith("2"):
                        accepted.append(rcpt)
                    out(reply)
                elif verb == "DATA":
                    carried += 1
                    with self.lock:
                        self.sessions.append((mail, list(offered)))
                    if not accepted:
                        out("554 5.5.1 no valid recipients")
                        continue
                    with self.lock:
                        self.data_attempts[accepted[0]] += 1
                        n = self.data_attempts[accepted[0]]
                    action = self.data_fault(list(accepted), n) if self.data_fault else None
                    out("354 go ahead")
                    if action in ("drop-354", "drop-body"):
                        if action == "drop-body":
                            self._read_body(f, limit=64 * 1024)
                        self._drop(conn, action)
                        return
                    data, complete = self._read_body(f)
                    if not complete:
                        return
                    mid = re.search(rb"(?im)^Message-ID:\s*(<[^>]*>)", data)
                    if mid and action in (None, "drop-dot"):  # delivered, or possibly so (no reply)
                        with self.lock:
                            self.message_ids[mid.group(1).decode()] += 1
                    if action == "drop-dot":  # the whole message arrived, but the client never hears so
                        self._drop(conn, action)
                        return
                    if action:  # a refusal (or deferral) after the final dot
                        with self.lock:
                            self.faults[action[:3]] += 1
                        out(action)
                        continue
                    with self.lock:
                        self.delivered.append((mail, list(accepted), data))
                        self.delivered_via.append((peer, helo))
                    out("250 2.0.0 queued")
                elif verb == "RSET":
                    mail, offered, accepted = None, [], []
                    out("250 2.0.0 ok")
                elif verb == "QUIT":
                    out("221 2.0.0 bye")
                    return
                else:
                    out("250 2.0.0 ok")
        except OSError:
            pass
        finally:
            with self.lock:
                self.conn_tx.append(carried)
            conn.close()

    @staticmethod
    def _read_body(f, limit=None):
        """The dot-unstuffed body up to the final dot (complete=True), or up to limit bytes / EOF."""
        data = bytearray()
        while limit is None or len(data) < limit:
            l = f.readline()
            if not l:
                return bytes(data), False
            if l == b".\r\n":
                return bytes(data), True
            data += l[1:] if l.startswith(b".") else l
        return bytes(data), False

    def _drop(self, conn, action):
        with self.lock:
            self.faults[action] += 1
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self):
        self.stopped = True
        self.sock.close()


def mtaqueue(m, *args, user=None):
    cmd = as_user(user, [os.path.join(BIN, "mtaqueue"), "-c", m.conf] + list(args))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def queue_json(m):
    for _ in range(3):
        try:
            r = mtaqueue(m, "list", "--json")
            return json.loads(r.stdout)
        except (ValueError, OSError) as e:
            err = "%s %r" % (e, locals().get("r") and (r.stdout + r.stderr))
            time.sleep(0.5)  # e.g. the binary is being relinked by a parallel build
    return {"error": err}


def send(m, sender, rcpts, subject, extra_headers="", text="Hello.\r\n"):
    body = ("From: <%s>\r\nTo: undisclosed-recipients:;\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n%s\r\n"
            "%s" % (sender, subject, subject.replace(" ", "-"), extra_headers, text))
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.sendmail(sender, rcpts, body.encode())


def dsns(m, user, subject_word=""):
    out = []
    for path in m.mailbox(user):
        msg = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.default)
        if subject_word in str(msg["Subject"]):
            out.append(msg)
    return out


def status_fields(report):
    """Per-recipient field dicts of a multipart/report's message/delivery-status part."""
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            return [dict((k.lower(), str(v)) for k, v in b.items()) for b in blocks[1:]]
    return []


# While GREYLIST["hold"] is set, m-tmp* recipients keep getting 451: a test can look at them in the queue
# without racing the retry (minimal_backoff_time is 1 s; a loaded machine may list later than that).
GREYLIST = {"hold": False}


def decide_by_name(rcpt, n):
    """The relayhost's RCPT replies by recipient name, n = attempt number for that recipient."""
    if rcpt.startswith("slowok"):
        return "451 4.3.0 try again later" if n <= 2 else "250 2.1.5 ok"
    if rcpt.startswith("nouser") or rcpt.startswith("m-bad"):
        return "550 5.1.1 <%s>: No such user" % rcpt
    if rcpt.startswith("m-tmp"):
        return "451 4.2.0 greylisted" if n == 1 or GREYLIST["hold"] else "250 2.1.5 ok"
    return "250 2.1.5 ok"


def relay_config(srv):
    """mta.conf lines sending all remote mail to srv, with short retries and no delay warnings."""
    return "relayhost = [127.0.0.1]:%d\nmaximal_backoff_time = 2s\ndelay_warning_time = 0\n" % srv.port
