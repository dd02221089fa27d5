"""Makes a small spool with the build at hand and freezes it as a test fixture, so that every later
build can be checked to deliver what this release queued (tests/integration/test_upgrade.py).

    /usr/bin/python3 tests/integration/make_fixture_spool.py LABEL

writes tests/fixtures/spool-LABEL/: db/data.mdb and body/ (the queue's own files, as mta-queue left them
after a clean stop) and manifest.json (what each message must look like when it is delivered). Run it
once per release whose queue format changed; never regenerate an existing fixture.

The spool holds: a two-recipient message with every DSN parameter (NOTIFY, ORCPT, RET, ENVID), an
8BITMIME body with UTF-8 text, a 100 KiB message, one submitted with sendmail (a local uid), and one
held by the admin. The relayhost answers 451 to everything, so each recipient has one failed attempt
(attempts, last error and bounce class recorded), except the held one."""
import hashlib
import json
import os
import shutil
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtatest import BIN, MTA, wait_for  # noqa: E402
from queuetest import ScriptedServer, mtaqueue, queue_json, relay_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def message(mid, subject, body, extra=""):
    return ("From: <fixture@localhost>\r\nTo: <someone@remote.test>\r\nSubject: %s\r\nMessage-ID: <%s>\r\n%s\r\n%s"
            % (subject, mid, extra, body))


def main():
    label = sys.argv[1]
    out = os.path.join(ROOT, "tests", "fixtures", "spool-" + label)
    if os.path.exists(out):
        sys.exit("%s exists: fixtures are never regenerated" % out)
    srv = ScriptedServer(lambda rcpt, n: "451 4.3.0 Temporary local problem, try later")
    srv.extensions = ["DSN"]
    m = MTA(name="fixture", extra=relay_config(srv).replace("maximal_backoff_time = 2s", "maximal_backoff_time = 1h")
            + "minimal_backoff_time = 1h\n")
    m.start()
    try:
        with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
            s.ehlo("fixture.test")
            s.sendmail("dsn@localhost", ["a@remote.test", "b@remote.test"],
                       message("dsn@fixture", "dsn parameters", "two recipients, every DSN parameter\r\n").encode(),
                       mail_options=["RET=HDRS", "ENVID=fixture-envid"],
                       rcpt_options=["NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@remote.test"])
            s.sendmail("utf8@localhost", ["c@remote.test"],
                       message("utf8@fixture", "8bit body", "Grüße aus dem Spool – ünïcödé\r\n",
                               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                               "Content-Transfer-Encoding: 8bit\r\n").encode(), mail_options=["BODY=8BITMIME"])
            line = "0123456789abcdef" * 4 + "\r\n"
            s.sendmail("big@localhost", ["d@remote.test"],
                       message("big@fixture", "100 KiB", line * (100 * 1024 // len(line))).encode())
            s.sendmail("held@localhost", ["e@remote.test"], message("held@fixture", "held", "held by the admin\r\n").encode())
        subprocess.run([os.path.join(BIN, "sendmail"), "-C", m.conf, "-f", "local@localhost", "f@remote.test"],
                       input=message("local@fixture", "from sendmail", "submitted with sendmail\r\n").encode(),
                       check=True, timeout=30)
        wait_for(lambda: sum(len(x["recipients"]) for x in queue_json(m).get("messages", [])) == 6, 20)
        held = [x["id"] for x in queue_json(m)["messages"] if x["sender"] == "held@localhost"]
        mtaqueue(m, "hold", held[0])
        # Every other recipient has had its one attempt.
        wait_for(lambda: all(r["attempts"] >= 1 for x in queue_json(m)["messages"] for r in x["recipients"]
                             if x["sender"] != "held@localhost"), 30)
        time.sleep(1)
        listing = queue_json(m)
    finally:
        m.stop()
        srv.stop()
    os.makedirs(out)
    shutil.copy2(os.path.join(m.spool, "queue", "db", "data.mdb"), os.path.join(out, "data.mdb"))
    os.makedirs(os.path.join(out, "body"))
    for x in listing["messages"]:  # not the free-space probe, not the body pool's unused files
        shutil.copy2(os.path.join(m.spool, "queue", "body", x["id"]), os.path.join(out, "body", x["id"]))
    manifest = []
    for x in listing["messages"]:
        path = os.path.join(out, "body", x["id"])
        with open(path, "rb") as f:
            body = f.read()
        manifest.append({"id": x["id"], "sender": x["sender"], "held": any(r["state"] == "held" for r in x["recipients"]),
                         "recipients": sorted(r["address"] for r in x["recipients"]),
                         "body_sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"label": label, "made_by": subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                                              capture_output=True, text=True).stdout.strip(),
                   "messages": manifest}, f, indent=1, sort_keys=True)
        f.write("\n")
    shutil.rmtree(m.dir, ignore_errors=True)
    print("wrote %s: %d messages" % (out, len(manifest)))


if __name__ == "__main__":
    main()
