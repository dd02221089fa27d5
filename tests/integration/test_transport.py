"""transport_map and smtp_tls_policy_map through the real process chain (issue 4): tables built with
mtamap, published by mtad into mta-queue's chroot, routing by exact domain, .domain and *, with NSD
serving MX records the transport entries must bypass and recording sinks on 127.0.0.4x. Covers
smtp:[host]:port, smtp:host (MX of host), lmtp:, local:, error: (DSN with the text), retry:,
per-destination TLS levels, relayhost below transport_map, replacing the table with mtamap while
mta-queue keeps running (same pid), and a vanished table deferring mail (4.3.0) instead of misrouting."""
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnszone import Nsd  # noqa: E402
from mtatest import BIN, check, delivery_events, finish, first_delivery_event, free_port, Guard, MTA, wait_for  # noqa: E402
from smtpsink import Sink  # noqa: E402

ZONE = """$ORIGIN tr.example.
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
bypass  IN MX 10 mxhost
mxd     IN MX 10 mxhost
mxhost  IN A 127.0.0.41
"""

SINKS = range(41, 51)  # .41 MX host, .42-.48 transport targets, .49 LMTP, .50 relayhost


def transport_source(port, swap_to, catch_all=True):
    lines = ["# transport_map for test_transport.py",
             "bypass.tr.example   smtp:[127.0.0.42]:%d" % port,
             ".sub.tr.example     smtp:[127.0.0.43]:%d" % port,
             "viamx.tr.example    smtp:mxd.tr.example:%d" % port,
             "gone.tr.example     error:5.1.2 this domain is retired, write to info@new.example",
             "busy.tr.example     retry:4.3.2 down for maintenance",
             "lmtp.tr.example     lmtp:[127.0.0.49]:%d" % port,
             "maildir.tr.example  local:",
             "enc.tr.example      smtp:[127.0.0.46]:%d" % port,
             "may.tr.example      smtp:[127.0.0.46]:%d" % port,
             "swap.tr.example     smtp:[127.0.0.%d]:%d" % (swap_to, port)]
    if catch_all:
        lines.append("*                   smtp:[127.0.0.44]:%d" % port)
    return "\n".join(lines) + "\n"


def mtamap(*args):
    return subprocess.run([os.path.join(BIN, "mtamap")] + list(args), capture_output=True, text=True, timeout=30)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def send(m, rcpt, tag, sender="sender@localhost"):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.docmd("MAIL FROM:<%s>" % sender)
        assert code == 250, (code, resp)
        code, resp = s.docmd("RCPT TO:<%s>" % rcpt)
        assert code == 250, (rcpt, code, resp)
        code, resp = s.data(("From: %s\r\nTo: %s\r\nSubject: transport %s\r\n\r\nbody %s\r\n"
                             % (sender, rcpt, tag, tag)).encode())
        assert code == 250, (code, resp)
        return re.search(r"queued as ([0-9A-F]{16})", resp.decode()).group(1)


events = delivery_events
wait_event = first_delivery_event


def routing(m, sinks, port):
    send(m, "ann@bypass.tr.example", "bypass")
    ev, relay, text = wait_event(m, "ann@bypass.tr.example")
    check("transport_literal_bypasses_mx", ev == "delivered" and sinks[42].messages_to("ann@bypass.tr.example")
          and not sinks[41].messages_to("ann@bypass.tr.example"), "%s %s %s" % (ev, relay, text))
    check("transport_route_logged", re.search(r"event=route qid=\S+ rcpt=<ann@bypass.tr.example> "
                                              r"transport=\"bypass.tr.example smtp:\[127.0.0.42\]:%d\"" % port,
                                              m.log_text()), "no event=route line")

    send(m, "bob@deep.sub.tr.example", "subdomain")
    ev, relay, text = wait_event(m, "bob@deep.sub.tr.example")
    check("transport_dot_domain_matches_subdomain", ev == "delivered" and
          sinks[43].messages_to("bob@deep.sub.tr.example"), "%s %s %s" % (ev, relay, text))

    send(m, "cy@viamx.tr.example", "viamx")
    ev, relay, text = wait_event(m, "cy@viamx.tr.example")
    check("transport_smtp_host_uses_its_mx", ev == "delivered" and "127.0.0.41" in relay and
          sinks[41].messages_to("cy@viamx.tr.example"), "%s %s %s" % (ev, relay, text))

    send(m, "dee@elsewhere.example", "catchall")
    ev, relay, text = wait_event(m, "dee@elsewhere.example")
    check("transport_catch_all", ev == "delivered" and sinks[44].messages_to("dee@elsewhere.example"),
          "%s %s %s" % (ev, relay, text))

    send(m, "eve@gone.tr.example", "error")
    ev, relay, text = wait_event(m, "eve@gone.tr.example")
    check("transport_error_bounces_now", ev == "bounced" and text.startswith("5.1.2 this domain is retired"),
          "%s %s %s" % (ev, relay, text))
    dsn = wait_for(lambda: [p for p in m.mailbox("sender") if b"this domain is retired" in open(p, "rb").read()], 20)
    body = open(dsn[0], "rb").read() if dsn else b""
    check("transport_error_dsn_carries_text", dsn and b"Status: 5.1.2" in body and b"eve@gone.tr.example" in body,
          body[:600])
    check("transport_error_not_sent", not any(s.messages_to("eve@gone.tr.example") for s in sinks.values()), "")

    send(m, "fay@busy.tr.example", "retry")
    ev, relay, text = wait_event(m, "fay@busy.tr.example")
    check("transport_retry_defers", ev == "deferred" and text.startswith("4.3.2 down for maintenance"),
          "%s %s %s" % (ev, relay, text))

    send(m, "gus@lmtp.tr.example", "lmtp")
    ev, relay, text = wait_event(m, "gus@lmtp.tr.example")
    check("transport_lmtp", ev == "delivered" and sinks[49].messages_to("gus@lmtp.tr.example") and
          any(c.startswith("LHLO ") for c in sinks[49].commands), "%s %s %s" % (ev, relay, text))

    send(m, "hal@maildir.tr.example", "local")
    got = wait_for(lambda: m.mailbox("hal"), 20)
    check("transport_local_maildir", got and b"transport local" in open(got[0], "rb").read(), m.all_messages())


def tls_policy(m, sinks):
    send(m, "ivy@enc.tr.example", "encrypt")
    send(m, "joe@may.tr.example", "may")
    ev, relay, text = wait_event(m, "ivy@enc.tr.example")
    check("tls_policy_encrypt_defers_without_starttls", ev == "deferred" and text.startswith("4.7.4") and
          not sinks[46].messages_to("ivy@enc.tr.example"), "%s %s %s" % (ev, relay, text))
    ev, relay, text = wait_event(m, "joe@may.tr.example")
    check("tls_policy_may_delivers", ev == "delivered" and sinks[46].messages_to("joe@may.tr.example"),
          "%s %s %s" % (ev, relay, text))
    check("tls_level_travels_to_mta_smtp", re.search(r"event=dispatch qid=\S+ nexthop=smtp:\[127.0.0.46\]:\d+ "
                                                     r"tls_level=encrypt", m.log_text()), "")


def replace_table(m, sinks, port, tdir):
    queue_pids = m.pids("mta-queue")
    send(m, "kim@swap.tr.example", "swap1")
    ev, _, text = wait_event(m, "kim@swap.tr.example")
    check("swap_before", ev == "delivered" and sinks[47].messages_to("kim@swap.tr.example"), "%s %s" % (ev, text))
    published = os.path.join(m.spool, "queue", "tables", "transport_map.lmdb")
    ino = os.stat(published).st_ino
    write(os.path.join(tdir, "transport.txt"), transport_source(port, 48, catch_all=False))
    r = mtamap("-t", "transport", os.path.join(tdir, "transport.txt"))
    check("mtamap_rebuild", r.returncode == 0, r.stderr)
    check("table_republished", wait_for(lambda: os.stat(published).st_ino != ino, 15),
          "published copy unchanged; log: " + m.log_text()[-1500:])
    send(m, "lou@swap.tr.example", "swap2")
    ev, _, text = wait_event(m, "lou@swap.tr.example")
    check("swap_after_routes_by_new_table", ev == "delivered" and sinks[48].messages_to("lou@swap.tr.example") and
          not sinks[47].messages_to("lou@swap.tr.example"), "%s %s" % (ev, text))
    check("swap_queue_not_restarted", queue_pids and m.pids("mta-queue") == queue_pids,
          "%r -> %r" % (queue_pids, m.pids("mta-queue")))
    # The new table has no "*": relayhost takes what transport_map does not name.
    send(m, "max@elsewhere.example", "relayhost")
    ev, relay, text = wait_event(m, "max@elsewhere.example")
    check("relayhost_below_transport_map", ev == "delivered" and sinks[50].messages_to("max@elsewhere.example"),
          "%s %s %s" % (ev, relay, text))
    st = os.stat(published)
    check("published_copy_mode", st.st_mode & 0o777 == 0o644 and st.st_uid == os.geteuid() and
          os.stat(os.path.dirname(published)).st_mode & 0o777 == 0o755, oct(st.st_mode))


def missing_table(m, tdir):
    """The TLS policy table vanishes: mail it would govern is deferred 4.3.0, never sent by default rules."""
    published = os.path.join(m.spool, "queue", "tables", "smtp_tls_policy_map.lmdb")
    os.unlink(os.path.join(tdir, "tls.lmdb"))
    check("missing_table_unpublished", wait_for(lambda: not os.path.exists(published), 15), "")
    send(m, "ned@may.tr.example", "missing")
    ev, relay, text = wait_event(m, "ned@may.tr.example")
    check("missing_table_defers_4_3_0", ev == "deferred" and text.startswith("4.3.0 smtp_tls_policy_map unavailable"),
          "%s %s %s" % (ev, relay, text))
    check("missing_table_logged", re.search(r"event=table_unavailable table=smtp_tls_policy_map", m.log_text()), "")
    check("missing_table_no_crash", m.proc.poll() is None and m.pids("mta-queue"), "")


def reload_without_policy(m):
    """mtactl reload with smtp_tls_policy_map removed from mta.conf: the copy goes, mail flows again."""
    published = os.path.join(m.spool, "queue", "tables", "smtp_tls_policy_map.lmdb")
    write(published, "stale")  # whatever is there must go once the key is unset
    with open(m.conf) as f:
        text = f.read()
    write(m.conf, re.sub(r"(?m)^smtp_tls_policy_map = .*$", "", text))
    r = m.ctl("reload")
    check("reload_ok", r.returncode == 0, r.stdout + r.stderr)
    check("reload_removes_unset_table", not os.path.exists(published), "")
    send(m, "oz@may.tr.example", "reloaded")
    ev, relay, text = wait_event(m, "oz@may.tr.example")
    check("reload_routes_without_policy", ev == "delivered" and "127.0.0.46" in relay, "%s %s %s" % (ev, relay, text))


def mtamap_cli(tdir, port):
    lmdb = os.path.join(tdir, "transport.lmdb")
    r = mtamap("-t", "transport", "-q", "x.Sub.tr.example", lmdb)
    check("mtamap_query_transport", r.returncode == 0 and
          r.stdout.strip() == ".sub.tr.example smtp:[127.0.0.43]:%d" % port, r.stdout + r.stderr)
    r = mtamap("-t", "transport", "-q", "nowhere.example", lmdb)
    check("mtamap_query_catch_all", r.returncode == 0 and r.stdout.startswith("* smtp:[127.0.0.44]"), r.stdout)
    bad = os.path.join(tdir, "bad.txt")
    write(bad, "ok.example smtp:\nbad.example smtp:[127.0.0.1\nworse.example error:4.0.0 wrong class\n")
    r = mtamap("-t", "transport", bad)
    check("mtamap_rejects_bad_transport", r.returncode != 0 and re.search(r"bad.txt:(2| line 2):", r.stderr) and
          re.search(r"bad.txt:(3| line 3):", r.stderr) and not os.path.exists(os.path.join(tdir, "bad.lmdb")), r.stderr)


def main():
    tmp = tempfile.mkdtemp(prefix="mtatest-transport-")
    os.chmod(tmp, 0o755)
    port = free_port(*["127.0.0.%d" % i for i in SINKS])
    nsd = Nsd(tmp, {"tr.example": ZONE})
    sinks = {}
    with Guard("transport") as g:
        g.cleanups += [lambda: [s.close() for s in sinks.values()], nsd.stop]
        if not check("transport_nsd_up", nsd.wait_answering("mxhost.tr.example", "127.0.0.41"), "nsd did not answer"):
            return
        for i in SINKS:
            sinks[i] = Sink("127.0.0.%d" % i, port, lmtp=(i == 49))
        write(os.path.join(tmp, "transport.txt"), transport_source(port, 47))
        write(os.path.join(tmp, "tls.txt"), "enc.tr.example encrypt\n.tr.example may\n")
        for kind, src in (("transport", "transport.txt"), ("tls_policy", "tls.txt")):
            r = mtamap("-t", kind, os.path.join(tmp, src))
            if not check("mtamap_build_" + kind, r.returncode == 0, r.stderr):
                return
        g.log = m = MTA(name="transport", extra="smtp_port = %d\ndns_forwarder = %s\ndns_insecure_domains = tr.example\n"
                "log_level = debug\nrelayhost = [127.0.0.50]:%d\ntransport_map = %s\nsmtp_tls_policy_map = %s\n"
                % (port, nsd.forwarder(), port, os.path.join(tmp, "transport.lmdb"), os.path.join(tmp, "tls.lmdb")))
        g.cleanups.insert(0, m.stop)
        m.start()
        routing(m, sinks, port)
        tls_policy(m, sinks)
        mtamap_cli(tmp, port)
        replace_table(m, sinks, port, tmp)
        missing_table(m, tmp)
        reload_without_policy(m)
    if os.environ.get("MTA_TEST_KEEP") is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    finish()
