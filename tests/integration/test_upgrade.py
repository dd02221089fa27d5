"""Upgrade safety: every spool fixture under tests/fixtures/ (frozen by make_fixture_spool.py from an
earlier release) is put in place of a fresh MTA's queue, and this build must deliver all of it: the
held message once released, every recipient with its DSN parameters, every body byte for byte (SHA-256
against the manifest). A spool marked as written by a newer format than this build knows is refused
by mtad at start, with a message that says so, and is left untouched."""
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtatest import BIN, check, finish, Guard, MTA, wait_for  # noqa: E402
from queuetest import ScriptedServer, mtaqueue, queue_json, relay_config, send  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def install_fixture(m, fixture):
    """The fixture's db and bodies in place of m's queue (m has run once, so its directories and users
    exist), owned like the queue directory."""
    qdir = os.path.join(m.spool, "queue")
    st = os.stat(qdir)
    for sub in ("db", "body"):
        shutil.rmtree(os.path.join(qdir, sub), ignore_errors=True)
    os.makedirs(os.path.join(qdir, "db"))
    shutil.copy(os.path.join(fixture, "data.mdb"), os.path.join(qdir, "db", "data.mdb"))
    shutil.copytree(os.path.join(fixture, "body"), os.path.join(qdir, "body"))
    for dirpath, dirs, files in os.walk(qdir):
        for name in dirs + files:
            os.lchown(os.path.join(dirpath, name), st.st_uid, st.st_gid)


def delivers(fixture):
    label = os.path.basename(fixture)
    with open(os.path.join(fixture, "manifest.json")) as f:
        manifest = json.load(f)["messages"]
    # The relayhost defers everything until the listing below is taken: the fixture's recipients are due
    # at once (their next attempts are long past), and the listing must see them still queued.
    gate = {"open": False}
    srv = ScriptedServer(lambda rcpt, n: "250 2.1.5 ok" if gate["open"] else "451 4.3.0 not yet")
    srv.extensions = ["DSN"]
    with Guard(label) as g:
        g.cleanups.append(srv.stop)
        g.log = m = MTA(name="upgrade", extra=relay_config(srv))
        m.start()
        m.stop()
        install_fixture(m, fixture)
        m.start()
        g.cleanups.insert(0, m.stop)
        listing = {x["id"]: x for x in queue_json(m).get("messages", [])}
        check("%s: every message of the fixture is in the queue" % label,
              sorted(listing) == sorted(x["id"] for x in manifest), sorted(listing))
        held = [x["id"] for x in manifest if x["held"]]
        check("%s: the held message is still held" % label,
              all(r["state"] == "held" for i in held for r in listing.get(i, {}).get("recipients", [{}])),
              [listing.get(i) for i in held])
        gate["open"] = True
        mtaqueue(m, "release", *held)
        mtaqueue(m, "flush")
        want = sum(len(x["recipients"]) for x in manifest)
        got = wait_for(lambda: sum(len(r) for _, r, _ in srv.delivered) >= want, 30)
        check("%s: all %d recipients delivered" % (label, want), got, [r for _, r, _ in srv.delivered])
        by_sender = {}
        for sender, rcpts, data in srv.delivered:
            by_sender.setdefault(sender, []).append((sorted(rcpts), hashlib.sha256(data).hexdigest()))
        for x in manifest:
            sent = by_sender.get(x["sender"], [])
            check("%s: %s arrives to %s with its body unchanged" % (label, x["id"], ",".join(x["recipients"])),
                  sorted(r for rc, _ in sent for r in rc) == x["recipients"] and
                  all(h == x["body_sha256"] for _, h in sent), sent)
        mail = [c for c in srv.commands if c.upper().startswith("MAIL FROM:<DSN@")]
        rcpt = [c for c in srv.commands if c.upper().startswith("RCPT TO:<A@REMOTE.TEST>")]
        check("%s: DSN parameters survive (RET, ENVID, NOTIFY, ORCPT)" % label,
              mail and "RET=HDRS" in mail[-1] and "ENVID=fixture-envid" in mail[-1] and rcpt and
              "NOTIFY=SUCCESS,FAILURE" in rcpt[-1] and "ORCPT=rfc822;a@remote.test" in rcpt[-1], (mail, rcpt))
        check("%s: the queue is empty afterwards" % label,
              wait_for(lambda: not queue_json(m).get("messages"), 20), queue_json(m))


def newer_refused():
    """A spool whose format mark is newer than this build's (set with Debian's mdb_dump/mdb_load): mtad
    says so and does not start; the spool is not touched."""
    with Guard("newer format") as g:
        g.log = m = MTA(name="newer")
        m.start()
        send(m, "newer@localhost", ["x@localhost"], "newer")  # the queue database exists
        wait_for(lambda: m.mailbox("x"), 20)
        m.stop()
        db = os.path.join(m.spool, "queue", "db")
        dump = subprocess.run(["mdb_dump", "-s", "meta", db], capture_output=True, text=True, timeout=30).stdout
        marked = re.search(r"^ 666f726d6174\n ([0-9a-f]{16})$", dump, re.M)  # key "format"
        check("newer: this build marks the spool with its format", marked is not None, dump)
        load = re.sub(r"(^ 666f726d6174\n )[0-9a-f]{16}$", r"\1e703000000000000", dump, flags=re.M)  # 999
        r = subprocess.run(["mdb_load", "-s", "meta", db], input=load, capture_output=True, text=True, timeout=30)
        check("newer: mdb_load marks the spool as format 999", r.returncode == 0, r.stderr)
        with open(os.path.join(db, "data.mdb"), "rb") as f:
            before = f.read()
        p = subprocess.Popen([os.path.join(BIN, "mtad"), "-c", m.conf, "-d"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # it started after all: stop it and its roles
            os.killpg(p.pid, signal.SIGTERM)
            out, _ = p.communicate(timeout=30)
        check("newer: mtad refuses to start on a spool from a newer format and says why",
              p.returncode not in (0, None, -signal.SIGTERM) and re.search(r"queue format 999 in \S+ is newer than this build reads \(up to format "
                                               r"\d+\)", out) is not None, out[-1500:])
        with open(os.path.join(db, "data.mdb"), "rb") as f:
            check("newer: the spool is left as it was", f.read() == before, "")
        check("newer: no role was started", "event=all_ready" not in out, "")


def main():
    fixtures = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "spool-*")))
    check("upgrade: there is a spool fixture", fixtures, fixtures)
    for fx in fixtures:
        delivers(fx)
    newer_refused()
    finish()


if __name__ == "__main__":
    main()
