#!/usr/bin/python3
"""A scripted milter on Sendmail's libmilter (Debian's python3-milter): it answers each stage as the
command line says, makes the listed modifications at end of message, and writes what it saw to a JSON
lines file, one line per callback:
  {"milter": NAME, "conn": N, "stage": STAGE, "macros": {name: value, ...}, ...stage fields}
stage fields: connect host/family/addr; helo name; mail args; rcpt args; unknown command; header
name/value (as libmilter hands them over: no leading space unless --leadspace); body len; eom headers
[[name, value]], body (latin-1 text), from, rcpts; abort; close. `macros` holds every macro of MACROS that
smfi_getsymval finds at that callback (libmilter keeps the earlier stages' macros visible).

Usage:
  scripted.py --socket unix:/path|inet:PORT@127.0.0.1 --record FILE [--name NAME]
    --reply STAGE ACTION [ARG...]   STAGE: connect helo mail rcpt data unknown header eoh body eom
        ACTION: continue | accept | reject | tempfail | discard | skip (body only; continue if SKIP was
        not negotiated) | replycode CODE XCODE LINE [LINE...] (multi-line text; XCODE "-" = none)
    --only-rcpt ADDR                the rcpt reply only for this recipient (others continue)
    --delay STAGE SECONDS [progress]   wait before answering; with "progress" (eom only, as libmilter
                                    allows) send SMFIR_PROGRESS every 0.5 s while waiting
    modifications at end of message, applied in command-line order:
    --addheader NAME VALUE | --insheader IDX NAME VALUE | --chgheader NAME IDX VALUE |
    --delheader NAME IDX | --chgfrom ADDR [ARGS] | --addrcpt ADDR [ARGS] | --delrcpt ADDR |
    --replbody TEXT ("\\n" becomes CRLF; @FILE reads the bytes of FILE) | --quarantine REASON
    --symlist STAGE "MACRO MACRO..."  ask for these macros at STAGE (SMFIF_SETSYMLIST; at most 5)
    --leadspace                     negotiate SMFIP_HDR_LEADSPC
    --no STAGE                      ask the MTA not to send STAGE (SMFIP_NO*)
Modifications apply when the eom reply is continue/accept (and also before reject: libmilter sends them
first either way; what the MTA does with them is the MTA's business)."""
import argparse
import json
import os
import sys
import threading
import time

import Milter

MACROS = ["j", "_", "v", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{client_addr}", "{client_port}",
          "{client_name}", "{client_ptr}", "{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}",
          "{cert_issuer}", "i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}",
          "{mail_mailer}", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}", "{if_name}", "{if_addr}"]
STAGES = ["connect", "helo", "mail", "rcpt", "data", "unknown", "header", "eoh", "body", "eom"]
SIMPLE = {"continue": Milter.CONTINUE, "accept": Milter.ACCEPT, "reject": Milter.REJECT,
          "tempfail": Milter.TEMPFAIL, "discard": Milter.DISCARD, "skip": Milter.SKIP}
NO_FLAG = {"connect": Milter.P_NOCONNECT, "helo": Milter.P_NOHELO, "mail": Milter.P_NOMAIL,
           "rcpt": Milter.P_NORCPT, "data": Milter.P_NODATA, "unknown": Milter.P_NOUNKNOWN,
           "header": Milter.P_NOHDRS, "eoh": Milter.P_NOEOH, "body": Milter.P_NOBODY}
SYM_STAGE = {"connect": Milter.M_CONNECT, "helo": Milter.M_HELO, "mail": Milter.M_ENVFROM,
             "rcpt": Milter.M_ENVRCPT, "data": Milter.M_DATA, "eoh": Milter.M_EOH, "eom": Milter.M_EOM}
MOD_ARGS = {"addheader": (2, 2), "insheader": (3, 3), "chgheader": (3, 3), "delheader": (2, 2),
            "chgfrom": (1, 2), "addrcpt": (1, 2), "delrcpt": (1, 1), "replbody": (1, 1), "quarantine": (1, 1)}


class ModAction(argparse.Action):
    """Keeps every modification option, in order, in namespace.mods."""

    def __call__(self, parser, ns, values, option_string=None):
        op = option_string.lstrip("-")
        lo, hi = MOD_ARGS[op]
        if not lo <= len(values) <= hi:
            parser.error("--%s takes %d to %d arguments" % (op, lo, hi))
        ns.mods = (ns.mods or []) + [[op] + list(values)]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--socket", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--name", default="scripted")
    p.add_argument("--reply", nargs="+", action="append", default=[], metavar="STAGE ACTION")
    p.add_argument("--only-rcpt")
    p.add_argument("--delay", nargs="+", action="append", default=[], metavar="STAGE SECONDS")
    p.add_argument("--symlist", nargs=2, action="append", default=[], metavar=("STAGE", "MACROS"))
    p.add_argument("--leadspace", action="store_true")
    p.add_argument("--no", action="append", default=[], choices=sorted(NO_FLAG))
    p.set_defaults(mods=[])
    for op in MOD_ARGS:
        p.add_argument("--" + op, nargs="+", action=ModAction, dest="mods")
    a = p.parse_args(argv)
    a.replies = {}
    for r in a.reply:
        if len(r) < 2 or r[0] not in STAGES or (r[1] not in SIMPLE and r[1] != "replycode"):
            p.error("bad --reply %s" % " ".join(r))
        if r[1] == "replycode" and (len(r) < 5 or r[2][:1] not in "45"):
            p.error("--reply STAGE replycode CODE XCODE LINE [LINE...] with a 4xx or 5xx code")
        a.replies[r[0]] = r[1:]
    a.delays = {}
    for d in a.delay:
        if d[0] not in STAGES or len(d) not in (2, 3) or (len(d) == 3 and (d[2] != "progress" or d[0] != "eom")):
            p.error("bad --delay %s" % " ".join(d))
        a.delays[d[0]] = (float(d[1]), len(d) == 3)
    for stage, _ in a.symlist:
        if stage not in SYM_STAGE:
            p.error("bad --symlist stage %s" % stage)
    return a


ARGS = None
_lock = threading.Lock()


def record(entry):
    line = json.dumps(entry) + "\n"
    with _lock:
        with open(ARGS.record, "a") as f:
            f.write(line)
            f.flush()


def text(v):
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v


class Scripted(Milter.Base):
    def __init__(self):
        self.conn = Milter.uniqueID()
        self.reset()

    def reset(self):
        self.headers, self.body_parts, self.sender, self.rcpts = [], [], None, []

    # -- bookkeeping

    def macros(self):
        out = {}
        for m in MACROS:
            v = self.getsymval(m)
            if v is not None:
                out[m] = v
        return out

    def note(self, stage, **fields):
        e = {"milter": ARGS.name, "conn": self.conn, "pid": os.getpid(), "stage": stage, "time": time.time()}
        if stage not in ("close", "abort"):
            e["macros"] = self.macros()
        e.update(fields)
        record(e)

    def answer(self, stage, rcpt=None):
        if stage in ARGS.delays:
            secs, progress = ARGS.delays[stage]
            end = time.time() + secs
            while time.time() < end:
                time.sleep(min(0.5, max(0.0, end - time.time())))
                if progress and time.time() < end:
                    self.progress()
        r = ARGS.replies.get(stage)
        if r is None or (stage == "rcpt" and ARGS.only_rcpt and rcpt and
                         rcpt.strip("<>").lower() != ARGS.only_rcpt.lower()):
            return Milter.CONTINUE
        if r[0] == "replycode":
            code, xcode, lines = r[1], (None if r[2] == "-" else r[2]), r[3:]
            self.setreply(code, xcode, *lines)
            return Milter.TEMPFAIL if code.startswith("4") else Milter.REJECT
        if r[0] == "skip" and not self._protocol & Milter.P_SKIP:
            return Milter.CONTINUE
        return SIMPLE[r[0]]

    # -- negotiation: every stage and reply unless --no, all actions, the requested macro lists

    def negotiate(self, opts):
        self._actions, offered, _f1, _f2 = opts
        want = 0
        for stage in ARGS.no:
            want |= NO_FLAG[stage]
        if ARGS.leadspace:
            want |= Milter.P_HDR_LEADSPC
        want |= Milter.P_SKIP
        opts[1] = self._protocol = offered & want
        opts[2] = opts[3] = 0
        for stage, names in ARGS.symlist:
            # Milter.Base.setsymlist hands the C module bytes where it wants str (python3-milter 1.0.5)
            self._ctx.setsymlist(SYM_STAGE[stage], " ".join(names.split()))
        record({"milter": ARGS.name, "conn": self.conn, "pid": os.getpid(), "stage": "negotiate",
                "time": time.time(), "offered_actions": self._actions, "offered_protocol": offered,
                "protocol": self._protocol})
        return Milter.CONTINUE

    # -- callbacks

    def connect(self, hostname, family, hostaddr):
        self.note("connect", host=hostname, family=int(family), addr=list(hostaddr) if isinstance(hostaddr, tuple)
                  else hostaddr)
        return self.answer("connect")

    def hello(self, name):
        self.note("helo", name=name)
        return self.answer("helo")

    @Milter.decode("bytes")
    def envfrom(self, sender, *args):
        self.reset()
        self.sender = text(sender)
        self.note("mail", args=[self.sender] + [text(x) for x in args])
        return self.answer("mail")

    @Milter.decode("bytes")
    def envrcpt(self, rcpt, *args):
        self.note("rcpt", args=[text(rcpt)] + [text(x) for x in args])
        r = self.answer("rcpt", text(rcpt))
        if r == Milter.CONTINUE:
            self.rcpts.append(text(rcpt))
        return r

    def data(self):
        self.note("data")
        return self.answer("data")

    def unknown(self, cmd):
        self.note("unknown", command=text(cmd))
        return self.answer("unknown")

    @Milter.decode("bytes")
    def header(self, name, value):
        self.headers.append([name, text(value)])
        self.note("header", name=name, value=text(value))
        return self.answer("header")

    def eoh(self):
        self.note("eoh")
        return self.answer("eoh")

    def body(self, chunk):
        self.body_parts.append(chunk)
        self.note("body", len=len(chunk))
        return self.answer("body")

    def eom(self):
        self.note("eom", headers=self.headers, body=b"".join(self.body_parts).decode("latin-1"),
                  sender=self.sender, rcpts=self.rcpts)
        result = self.answer("eom")
        for mod in ARGS.mods:
            self.modify(mod)
        return result

    def modify(self, mod):
        op, a = mod[0], mod[1:]
        if op == "addheader":
            self.addheader(a[0], a[1])
        elif op == "insheader":
            self.addheader(a[1], a[2], int(a[0]))
        elif op == "chgheader":
            self.chgheader(a[0], int(a[1]), a[2])
        elif op == "delheader":
            self.chgheader(a[0], int(a[1]), "")
        elif op == "chgfrom":
            self.chgfrom(a[0], a[1] if len(a) > 1 else None)
        elif op == "addrcpt":
            self.addrcpt(a[0], a[1] if len(a) > 1 else None)
        elif op == "delrcpt":
            self.delrcpt(a[0])
        elif op == "replbody":
            if a[0].startswith("@"):
                with open(a[0][1:], "rb") as f:
                    data = f.read()
            else:
                data = a[0].replace("\\n", "\r\n").encode()
            for i in range(0, len(data), 65535):
                self.replacebody(data[i:i + 65535])
        elif op == "quarantine":
            self.quarantine(a[0])

    def abort(self):
        self.note("abort")
        return Milter.CONTINUE

    def close(self):
        self.note("close")
        return Milter.CONTINUE


def main():
    global ARGS
    ARGS = parse_args(sys.argv[1:])
    Milter.factory = Scripted
    Milter.set_flags(Milter.CURR_ACTS)
    record({"milter": ARGS.name, "stage": "start", "pid": os.getpid(), "time": time.time()})
    Milter.runmilter(ARGS.name, ARGS.socket, timeout=600)


if __name__ == "__main__":
    main()
