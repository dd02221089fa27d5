"""mta-msgauth end to end, judged by independent implementations only: real mtad, real clients, NSD
serving the test zones. Mail from mynetworks is signed (RSA and Ed25519) and verifies with dkimpy and
with OpenDKIM's opendkim-testmsg; mail signed by dkimpy gets dkim=pass, a changed byte dkim=fail; our SPF
result for 40 records (includes, loops, redirect, macros, ip6, void lookups, too many lookups,
malformed) equals pyspf's; DMARC pass/fail from the RFC 7489 rules, p=reject enforced with 550; forged
Authentication-Results with our id removed; msgauth_default_action when mta-msgauth is stopped or killed;
`mtad -n` names a bad key by FILE:LINE."""
import base64
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import threading
import time

import dkim
import dns.resolver
import spf

from dnszone import Nsd, nsd_txt
from mtatest import BIN, MTA, TMP_ROOT, Guard, as_user, check, finish, free_port, wait_for

HOST = "mx.test.example"
UNTRUSTED = "127.0.0.9"   # neither in mynetworks nor authenticated: verified
TRUSTED = "127.0.0.1"     # mynetworks: signed
SPF_HELO = "client.spf.example"


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=60, **kw)


def mtadkim_keygen(tmp, domain, sel, alg):
    path = os.path.join(tmp, "%s.%s.key" % (domain, sel))
    r = run([os.path.join(BIN, "mtadkim"), "keygen", "-d", domain, "-s", sel, "-a", alg, "-o", path], text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return path, r.stdout.strip()


def record_of(zone_line):
    return "".join(re.findall(r'"([^"]*)"', zone_line))


def ed25519_seed(keyfile):
    der = run(["openssl", "pkey", "-in", keyfile, "-outform", "DER"], check=True).stdout
    return base64.b64encode(der[-32:])


def zone(origin, lines):
    head = ["$ORIGIN %s." % origin, "$TTL 1", "@ IN SOA ns hostmaster 1 3600 600 86400 1", "@ IN NS ns",
            "ns IN A 127.0.0.1"]
    return "\n".join(head + lines) + "\n"


def txt(s):
    """A TXT record's rdata: strings of at most 255 octets."""
    return " ".join('"%s"' % s[i:i + 255] for i in range(0, max(len(s), 1), 255))


# ---- SPF: name -> (records, extra zone lines). The client is 127.0.0.9, HELO client.spf.example. ----
SPF_CASES = {
    "pass-ip4": ["v=spf1 ip4:127.0.0.9 -all"],
    "fail-ip4": ["v=spf1 ip4:127.0.0.10 -all"],
    "softfail": ["v=spf1 ~all"],
    "neutral": ["v=spf1 ?all"],
    "plusall": ["v=spf1 +all"],
    "cidr": ["v=spf1 ip4:127.0.0.0/24 -all"],
    "cidr-miss": ["v=spf1 ip4:127.0.1.0/24 -all"],
    "ip6-only": ["v=spf1 ip6:::1 ip6:2001:db8::/32 -all"],
    "a-self": ["v=spf1 a -all"],
    "a-host": ["v=spf1 a:host.spf.example -all"],
    "a-cidr": ["v=spf1 a:host2.spf.example/24 -all"],
    "a-cidr6": ["v=spf1 a:host2.spf.example/32//64 -all"],
    "mx-pass": ["v=spf1 mx -all"],
    "mx-miss": ["v=spf1 mx:mx-other.spf.example -all"],
    "mx-many": ["v=spf1 mx:mx-eleven.spf.example -all"],
    "include-pass": ["v=spf1 include:pass-ip4.spf.example -all"],
    "include-fail": ["v=spf1 include:fail-ip4.spf.example ?all"],
    "include-chain": ["v=spf1 include:include-pass.spf.example -all"],
    "include-loop": ["v=spf1 include:include-loop.spf.example -all"],
    "include-none": ["v=spf1 include:nonexistent.spf.example -all"],
    "include-norecord": ["v=spf1 include:norecord.spf.example -all"],
    "redirect-pass": ["v=spf1 redirect=pass-ip4.spf.example"],
    "redirect-fail": ["v=spf1 redirect=fail-ip4.spf.example"],
    "redirect-loop": ["v=spf1 redirect=redirect-loop.spf.example"],
    "redirect-with-all": ["v=spf1 -all redirect=pass-ip4.spf.example"],
    "exists-ip": ["v=spf1 exists:%{i}.ex.spf.example -all"],
    "exists-ir": ["v=spf1 exists:%{ir}.rev.spf.example -all"],
    "macro-l": ["v=spf1 exists:%{l}.users.spf.example -all"],
    "macro-d": ["v=spf1 exists:%{d2}.dom.spf.example -all"],
    "macro-bad": ["v=spf1 exists:%{z}.spf.example -all"],
    "too-many": ["v=spf1 " + " ".join("a:h%d.spf.example" % i for i in range(1, 12)) + " -all"],
    "ten-lookups": ["v=spf1 " + " ".join("a:h%d.spf.example" % i for i in range(1, 10)) + " ip4:127.0.0.9 -all"],
    "void-three": ["v=spf1 a:void1.spf.example a:void2.spf.example a:void3.spf.example ip4:127.0.0.9 -all"],
    "void-two": ["v=spf1 a:void1.spf.example a:void2.spf.example ip4:127.0.0.9 -all"],
    "malformed-ip": ["v=spf1 ip4:300.1.1.1 -all"],
    "malformed-mech": ["v=spf1 foo:bar -all"],
    "two-records": ["v=spf1 -all", "v=spf1 +all"],
    "not-spf": ["hello world"],
    "uppercase": ["V=SPF1 IP4:127.0.0.9 -ALL"],
    "exp": ["v=spf1 -all exp=explain.spf.example"],
    "long-record": ["v=spf1 " + " ".join("ip4:10.%d.0.0/16" % i for i in range(40)) + " ip4:127.0.0.9 -all"],
}
SPF_EXTRA = [
    "a-self IN A 127.0.0.9",
    "host IN A 127.0.0.9",
    "host2 IN A 127.0.0.200",
    "mx-pass IN MX 10 mx1",
    "mx1 IN A 127.0.0.9",
    "mx-other IN MX 10 mx2",
    "mx2 IN A 127.0.0.50",
] + ["mx-eleven IN MX %d m%d" % (i, i) for i in range(11)] + ["m%d IN A 127.0.0.60" % i for i in range(11)] + [
    "127.0.0.9.ex IN A 127.0.0.2",
    "9.0.0.127.rev IN A 127.0.0.2",
    "alice.users IN A 127.0.0.2",
    "spf.example.dom IN A 127.0.0.2",
    "norecord IN A 127.0.0.1",
    'explain IN TXT "not allowed from %{i}"',
    'client IN TXT "v=spf1 ip4:127.0.0.9 -all"',
] + ["h%d IN A 127.0.0.70" % i for i in range(1, 12)]


def spf_zone():
    lines = list(SPF_EXTRA)
    for name, recs in SPF_CASES.items():
        for r in recs:
            lines.append("%s IN TXT %s" % (name, txt(r)))
    return zone("spf.example", lines)


def pyspf_result(nsd, ip, sender, helo):
    """pyspf (python3-spf) asking the same NSD."""
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [nsd.addr]
    res.port = nsd.port
    dns.resolver.default_resolver = res
    result, _text = spf.check2(i=ip, s=sender, h=helo, receiver=HOST)
    return result


# ---- SMTP and mailbox helpers ----

class Sent:
    def __init__(self, code, text, user):
        self.code, self.text, self.user = code, text, user


def send(m, source, mail_from, user, body, helo=SPF_HELO):
    """One transaction; the final reply (code, text). Refusals are answers, not exceptions."""
    s = smtplib.SMTP("127.0.0.1", m.port, local_hostname=helo, source_address=(source, 0), timeout=60)
    try:
        s.ehlo(helo)
        code, text = s.mail(mail_from)
        if code == 250:
            code, text = s.rcpt("%s@localhost" % user)
        if code == 250:
            code, text = s.data(body)
        return Sent(code, text.decode("utf-8", "replace"), user)
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


def delivered(m, user, timeout=20):
    """The delivered message as CRLF bytes, without the Return-Path: the local agent adds."""
    if not wait_for(lambda: m.mailbox(user), timeout):
        return b""
    with open(m.mailbox(user)[0], "rb") as f:
        data = f.read()
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data.startswith(b"Return-Path:"):
        data = data[data.index(b"\r\n") + 2:]
    return data


def headers_named(msg, name):
    """Unfolded values of every header field `name` in the header section of msg (bytes)."""
    head = msg.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    fields = re.split(r"\r\n(?![ \t])", head)
    out = []
    for f in fields:
        k, _, v = f.partition(":")
        if k.strip().lower() == name.lower():
            out.append(re.sub(r"\r\n[ \t]+", " ", v).strip())
    return out


def message(frm, subject, extra=b"", body=b"Hello.\r\n\r\nSecond  paragraph, with  spaces.  \r\n\r\n\r\n"):
    return (b"From: Alice <%s>\r\nTo: Bob <bob@localhost>\r\nSubject: %s\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
            b"Message-ID: <%s@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n%s\r\n%s"
            % (frm.encode(), subject.encode(), str(time.time_ns()).encode(), extra, body))


def opendkim_root(tmp):
    """A minimal root for opendkim-testmsg: the program and the libraries ldd lists, copied. It asks the
    system resolver (/etc/resolv.conf, no other knob), and a root of its own lets that file name our NSD
    without touching the host's. A mount namespace would be simpler, but cannot change mount propagation
    inside a chroot (fresh-check runs in one), and a bind mount without it could leak to the host."""
    root = os.path.join(tmp, "opendkim-root")
    if os.path.isdir(root):
        return root
    prog = shutil.which("opendkim-testmsg")
    libs = re.findall(r"(/\S+)", subprocess.run(["ldd", prog], capture_output=True, text=True).stdout)
    for path in [prog] + libs:
        dst = root + path
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(path, dst)
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    return root


def opendkim_verify(nsd, msg, tmp):
    """opendkim-testmsg (OpenDKIM's library) on msg, in its own root whose /etc/resolv.conf names our NSD
    (on port 53). Returns (ok, output)."""
    root = opendkim_root(tmp)
    with open(os.path.join(root, "etc", "resolv.conf"), "w") as f:
        f.write("nameserver %s\noptions attempts:1 timeout:2\n" % nsd.addr)
    r = subprocess.run(["chroot", root, shutil.which("opendkim-testmsg"), "-t", "/tmp"], input=msg,
                       capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    return r.returncode == 0 and not out.strip(), out


def dkimpy_ok(msg, lookup, idx=0):
    """dkimpy's verdict on signature idx; its exceptions (body hash mismatch, ...) are a failure."""
    try:
        return bool(dkim.DKIM(msg).verify(idx=idx, dnsfunc=lookup))
    except dkim.DKIMException:
        return False


def sig_algorithms(msg):
    return sorted(re.search(r"\ba=([a-z0-9-]+)", v).group(1) for v in headers_named(msg, "DKIM-Signature"))


# ---- the sections ----

def signing_tests(m, nsd, tmp):
    lookup = nsd_txt(nsd)
    cases = [("sign.example", ["ed25519-sha256", "rsa-sha256"]), ("rsaonly.example", ["rsa-sha256"]),
             ("edonly.example", ["ed25519-sha256"])]
    for i, (domain, algs) in enumerate(cases):
        r = send(m, TRUSTED, "alice@%s" % domain, "sign%d" % i, message("alice@%s" % domain, "signed %d" % i))
        msg = delivered(m, "sign%d" % i)
        check("sign %s: 250 and delivered with %s" % (domain, "+".join(algs)),
              r.code == 250 and sig_algorithms(msg) == algs, "%d %s %s" % (r.code, r.text, sig_algorithms(msg)))
        for idx in range(len(algs)):
            check("sign %s: dkimpy verifies signature %d" % (domain, idx), dkimpy_ok(msg, lookup, idx), msg[:1500])
        ok, out = opendkim_verify(nsd, msg, tmp)
        check("sign %s: opendkim-testmsg verifies" % domain, ok, out)
        if i == 0:
            h = headers_named(msg, "DKIM-Signature")[0]
            hlist = re.search(r"\bh=([^;]*)", h).group(1).replace(" ", "").lower().split(":")
            check("sign: relaxed/relaxed, From/To/Subject/Date/Message-ID/MIME oversigned",
                  "c=relaxed/relaxed" in h and all(hlist.count(n) == 2 for n in
                                                  ("from", "to", "subject", "date", "message-id", "mime-version")),
                  h)
            bad = msg.replace(b"Second  paragraph", b"Second  paragraphs")
            ok, out = opendkim_verify(nsd, bad, tmp)
            check("sign: a changed body byte fails opendkim-testmsg (the check is real)", not ok, out)
            check("sign: a changed body byte fails dkimpy", not dkimpy_ok(bad, lookup))
    r = send(m, TRUSTED, "bob@sub.sign.example", "signsub", message("bob@sub.sign.example", "parent key"))
    msg = delivered(m, "signsub")
    check("sign: a subdomain of a listed domain is signed with the parent's keys (d=sign.example)",
          r.code == 250 and all("d=sign.example" in h for h in headers_named(msg, "DKIM-Signature")) and
          dkimpy_ok(msg, lookup), msg[:800])
    r = send(m, TRUSTED, "carol@nokey.example", "nokey", message("carol@nokey.example", "no key"))
    msg = delivered(m, "nokey")
    check("sign: a From: domain without a key is not signed", r.code == 250 and msg and
          not headers_named(msg, "DKIM-Signature"), msg[:600])
    forged = (b"Authentication-Results: mx.test.example; dkim=pass header.d=bank.example\r\n"
              b"Authentication-Results: other.example; spf=pass\r\n")
    r = send(m, TRUSTED, "alice@sign.example", "signforged", message("alice@sign.example", "forged", forged))
    msg = delivered(m, "signforged")
    ars = headers_named(msg, "Authentication-Results")
    check("sign: Authentication-Results claiming our id removed, another id's kept; still verifies",
          r.code == 250 and ars == ["other.example; spf=pass"] and dkimpy_ok(msg, lookup), ars)


def smtpd_msgauth_links(m):
    """Links mta-smtpd processes made to mta-msgauth so far (mta-queue makes one of its own)."""
    return len(re.findall(r"mta-smtpd\[\d+\]: level=\w+ event=msgauth_link_up", m.log_text()))


def sendmail(m, user, body):
    """Local submission as an unprivileged user; mta-queue's pickup takes it from the maildrop."""
    return subprocess.run(as_user("nobody", [os.path.join(BIN, "sendmail"), "-C", m.conf, "%s@localhost" % user]),
                          input=body, capture_output=True, timeout=60)


def sendmail_tests(m, nsd, tmp):
    """Mail from sendmail is signed like mail from mynetworks: the queue hands it to mta-msgauth."""
    lookup = nsd_txt(nsd)
    r = sendmail(m, "smsign", message("alice@sign.example", "sendmail signed"))
    msg = delivered(m, "smsign")
    check("sendmail: picked-up mail is signed with Ed25519 and RSA",
          r.returncode == 0 and sig_algorithms(msg) == ["ed25519-sha256", "rsa-sha256"],
          (r.returncode, r.stderr, sig_algorithms(msg), msg[:600]))
    for idx in range(2):
        check("sendmail: dkimpy verifies signature %d" % idx, dkimpy_ok(msg, lookup, idx), msg[:1500])
    ok, out = opendkim_verify(nsd, msg, tmp)
    check("sendmail: opendkim-testmsg verifies", ok, out)
    check("sendmail: the signature follows our Received: (it is not signed over)",
          b"Received: by mx.test.example (mta sendmail" in msg and
          msg.index(b"Received: by mx.test.example (mta sendmail") < msg.index(b"DKIM-Signature:"), msg[:400])
    check("sendmail: mta-msgauth logged the queue as its client",
          re.search(r"event=msgauth qid=[0-9A-F]{16} via=queue .*trusted=yes", m.log_text()) is not None)
    forged = b"Authentication-Results: mx.test.example; dkim=pass header.d=bank.example\r\n"
    r = sendmail(m, "smforged", message("alice@sign.example", "sendmail forged", forged))
    msg = delivered(m, "smforged")
    check("sendmail: Authentication-Results claiming our id removed; still verifies",
          r.returncode == 0 and not headers_named(msg, "Authentication-Results") and dkimpy_ok(msg, lookup), msg[:800])
    r = sendmail(m, "smnokey", message("carol@nokey.example", "sendmail no key"))
    msg = delivered(m, "smnokey")
    check("sendmail: a From: domain without a key is delivered unsigned",
          r.returncode == 0 and msg and not headers_named(msg, "DKIM-Signature"), msg[:600])


def verify_tests(m, nsd, keys):
    def dkimpy_sign(msg, sel, keyfile, alg, domain="sender.example"):
        if alg == "rsa":
            with open(keyfile, "rb") as f:
                return dkim.sign(msg, sel.encode(), domain.encode(), f.read())
        return dkim.sign(msg, sel.encode(), domain.encode(), ed25519_seed(keyfile), signature_algorithm=b"ed25519-sha256")

    base = message("dave@sender.example", "from dkimpy")
    rsa = dkimpy_sign(base, "r1", keys["sender-rsa"], "rsa")
    ed = dkimpy_sign(base, "e1", keys["sender-ed"], "ed25519")
    for n, (label, sig) in enumerate((("RSA", rsa), ("Ed25519", ed))):
        r = send(m, UNTRUSTED, "dave@sender.example", "ver%d" % n, sig + base)
        ar = headers_named(delivered(m, "ver%d" % n), "Authentication-Results")
        check("verify: dkimpy %s signature -> dkim=pass with our authserv-id" % label,
              r.code == 250 and len(ar) == 1 and ar[0].startswith(HOST + ";") and "dkim=pass" in ar[0] and
              "header.d=sender.example" in ar[0], ar)
    r = send(m, UNTRUSTED, "dave@sender.example", "verboth", ed + rsa + base)
    ar = headers_named(delivered(m, "verboth"), "Authentication-Results")
    check("verify: both signatures -> two dkim=pass", r.code == 250 and ar and ar[0].count("dkim=pass") == 2, ar)
    r = send(m, UNTRUSTED, "dave@sender.example", "verbad", rsa + base.replace(b"Hello.", b"Hallo."))
    ar = headers_named(delivered(m, "verbad"), "Authentication-Results")
    check("verify: one changed body byte -> dkim=fail", r.code == 250 and ar and "dkim=fail" in ar[0], ar)
    r = send(m, UNTRUSTED, "dave@sender.example", "verhdr", ed + base.replace(b"Subject: from", b"Subject: From"))
    ar = headers_named(delivered(m, "verhdr"), "Authentication-Results")
    check("verify: one changed signed header -> dkim=fail", r.code == 250 and ar and "dkim=fail" in ar[0], ar)
    gone = dkimpy_sign(base, "gone", keys["sender-rsa"], "rsa")
    r = send(m, UNTRUSTED, "dave@sender.example", "vergone", gone + base)
    ar = headers_named(delivered(m, "vergone"), "Authentication-Results")
    check("verify: key not in the zone -> dkim=permerror", r.code == 250 and ar and "dkim=permerror" in ar[0], ar)
    forged = b"Authentication-Results: MX.TEST.EXAMPLE (forged); dkim=pass header.d=bank.example\r\n"
    r = send(m, UNTRUSTED, "dave@sender.example", "verforged", rsa + forged + base)
    msg = delivered(m, "verforged")
    ar = headers_named(msg, "Authentication-Results")
    check("verify: a forged Authentication-Results with our id is removed, ours added",
          r.code == 250 and len(ar) == 1 and "bank.example" not in ar[0] and "dkim=pass" in ar[0], ar)
    check("verify: Received-SPF added", len(headers_named(msg, "Received-SPF")) == 1, msg[:1000])
    # Hostile key records: 8 KB of base64 garbage (over mta-resolver's 4000-octet record bound, so the
    # lookup fails: temperror), and a record that is not a key at all (permerror).
    for sel, what, want in (("huge", "an 8 KB garbage key", "dkim=temperror"),
                            ("notakey", "a record that is not a key", "dkim=permerror")):
        sig = dkimpy_sign(base, sel, keys["sender-rsa"], "rsa")
        r = send(m, UNTRUSTED, "dave@sender.example", "ver" + sel, sig + base)
        ar = headers_named(delivered(m, "ver" + sel), "Authentication-Results")
        check("verify: %s in DNS -> %s, message accepted" % (what, want), r.code == 250 and ar and want in ar[0],
              (r.code, ar))
    junk = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; d=x%d.example; s=s; b=!!; bh=; h=from\r\n" % i
                    for i in range(9000))
    r = send(m, UNTRUSTED, "dave@sender.example", "verjunk", junk + base)
    ar = headers_named(delivered(m, "verjunk"), "Authentication-Results")
    check("verify: 9,000 malformed signatures -> a bounded verdict (dkim_max_signatures), message accepted",
          r.code == 250 and ar and ar[0].count("dkim=") == 8 and "dkim=permerror" in ar[0], (r.code, ar[:1]))
    more = b"".join(b"X-Filler-%d: x\r\n" % i for i in range(1100))
    r = send(m, UNTRUSTED, "dave@sender.example", "verhuge", junk + more + base)
    check("verify: more than 10,000 header fields -> 552 5.3.4 (a forged verdict could not be removed)",
          r.code == 552 and r.text.startswith("5.3.4"), (r.code, r.text))


def spf_tests(m, nsd):
    cases = [("alice@%s.spf.example" % name, SPF_HELO) for name in SPF_CASES]
    cases += [("alice@nonexistent.spf.example", SPF_HELO), ("", SPF_HELO)]
    agree = 0
    for n, (sender, helo) in enumerate(cases):
        user = "spf%d" % n
        r = send(m, UNTRUSTED, sender, user, message("x@spf.example", "spf %d" % n), helo=helo)
        msg = delivered(m, user)
        rs = headers_named(msg, "Received-SPF")
        ours = rs[0].split()[0].lower() if rs else "(none: %d %s)" % (r.code, r.text)
        theirs = pyspf_result(nsd, UNTRUSTED, sender or "postmaster@" + helo, helo)
        ar = headers_named(msg, "Authentication-Results")
        same = ours == theirs and ar and ("spf=%s smtp.mailfrom=" % theirs) in ar[0]
        agree += bool(same)
        check("spf %-32s ours=%-9s pyspf=%s" % (sender or "<>", ours, theirs), same, ar)
    check("spf: %d records compared with pyspf" % len(cases), len(cases) >= 30 and agree == len(cases),
          "%d of %d agree" % (agree, len(cases)))
    r = send(m, UNTRUSTED, "alice@pass-ip4.spf.example", "spfhelo", message("x@spf.example", "helo"))
    ar = headers_named(delivered(m, "spfhelo"), "Authentication-Results")
    theirs = pyspf_result(nsd, UNTRUSTED, "postmaster@" + SPF_HELO, SPF_HELO)
    check("spf: the HELO identity reported too (smtp.helo), as pyspf finds it",
          ar and ("spf=%s smtp.helo=%s" % (theirs, SPF_HELO)) in ar[0], ar)


def dmarc_tests(m, nsd, keys):
    def one(n, mail_from, frm, expect_code, expect, extra_check="", signed=None):
        body = message(frm, "dmarc %d" % n)
        if signed:
            with open(keys["dmarc-rsa"], "rb") as f:
                body = dkim.sign(body, b"r1", signed.encode(), f.read()) + body
        r = send(m, UNTRUSTED, mail_from, "dmarc%d" % n, body)
        if expect_code != 250:
            check("dmarc %d: From %s, MAIL FROM %s -> %d" % (n, frm, mail_from, expect_code),
                  r.code == expect_code and r.text.startswith("5.7.1"), (r.code, r.text))
            return
        ar = headers_named(delivered(m, "dmarc%d" % n), "Authentication-Results")
        check("dmarc %d: From %s, MAIL FROM %s -> 250 %s %s" % (n, frm, mail_from, expect, extra_check),
              r.code == 250 and ar and expect in ar[0] and extra_check in ar[0], (r.code, r.text, ar))

    one(1, "a@dmarc.example", "a@dmarc.example", 250, "dmarc=pass")                  # SPF aligned (strict name)
    one(2, "a@other.example", "a@dmarc.example", 550, "")                            # unaligned, p=reject: 550
    one(3, "a@sub.dmarc.example", "a@dmarc.example", 250, "dmarc=pass")              # relaxed: same org domain
    one(4, "a@other.example", "a@dmarc.example", 250, "dmarc=pass", signed="dmarc.example")  # DKIM aligned
    one(5, "a@other.example", "a@sub2.dmarc.example", 250, "dmarc=fail", "p=none")   # sp=none via the org domain
    one(8, "a@sub.strict.example", "a@strict.example", 550, "")                      # aspf=s: sub.strict not aligned
    one(9, "a@other.example", "a@nodmarc.example", 250, "dmarc=none")                # no record
    # The organizational domain through a real PSL suffix: brand.co.uk (not co.uk) publishes sp=reject.
    one(10, "a@other.example", "a@mail.brand.co.uk", 550, "")
    one(11, "a@other.example", "a@brand.co.uk", 250, "dmarc=fail", "p=none")


def quarantine_tests(m):
    """Under dmarc_action = enforce a quarantine disposition is accepted with 250, queued held with its
    reason, and delivered on mtaqueue release: p=quarantine, and p=reject with pct=0 (RFC 7489 §6.6.4: a
    message the percentage leaves out gets the next milder policy)."""
    def one(n, frm, domain, ar_detail):
        r = send(m, UNTRUSTED, "a@other.example", "dmarc%d" % n, message(frm, "dmarc %d" % n))
        qid = re.search(r"queued as ([0-9A-F]{16})", r.text)
        if not check("dmarc %d: From %s is accepted with 250 and a queue id" % (n, frm), r.code == 250 and qid,
                     (r.code, r.text)):
            return
        qid = qid.group(1)
        mtaqueue = [os.path.join(BIN, "mtaqueue"), "-c", m.conf]
        reason = "DMARC policy quarantine for " + domain
        shown = run(mtaqueue + ["show", qid], text=True).stdout
        check("dmarc %d: mtaqueue show says held on arrival, and why" % n,
              "Held:       on arrival: " + reason in shown and
              re.search(r"dmarc%d@localhost +\[held" % n, shown) is not None, shown)
        js = json.loads(run(mtaqueue + ["show", "--json", qid], text=True).stdout or "{}").get("message", {})
        check("dmarc %d: show --json has hold_reason and a held recipient" % n,
              js.get("hold_reason") == reason and [x.get("state") for x in js.get("recipients", [])] == ["held"], js)
        # Held is decided in the commit that said 250: nothing is on its way to the mailbox to wait for.
        check("dmarc %d: nothing delivered while held" % n, not m.mailbox("dmarc%d" % n), m.mailbox("dmarc%d" % n))
        rel = run(mtaqueue + ["release", qid], text=True)
        ar = headers_named(delivered(m, "dmarc%d" % n), "Authentication-Results")
        check("dmarc %d: mtaqueue release delivers it, with dmarc=fail (%s)" % (n, ar_detail),
              rel.returncode == 0 and ar and "dmarc=fail" in ar[0] and ar_detail in ar[0],
              (rel.stdout, rel.stderr, ar))
        check("dmarc %d: the log names the hold" % n,
              re.search(r"event=queued qid=%s .*held=\"%s\"" % (qid, reason), m.log_text()) is not None)

    one(6, "a@pct.example", "pct.example", "p=reject")
    one(7, "a@quarantine.example", "quarantine.example", "p=quarantine")


def default_action_tests(m):
    def msgauth_pid():
        pids = m.pids("mta-msgauth")
        return pids[0] if pids else None

    def send_while_stopped(pid, *args):
        os.kill(pid, signal.SIGSTOP)
        try:
            return send(m, *args)
        finally:
            os.kill(pid, signal.SIGCONT)

    pid = msgauth_pid()
    r = send_while_stopped(pid, UNTRUSTED, "dave@sender.example", "deftemp", message("dave@sender.example", "stopped"))
    check("default: msgauth stopped past msgauth_timeout -> 451 4.7.0 (tempfail, the default)",
          r.code == 451 and r.text.startswith("4.7.0"), (r.code, r.text))
    check("default: the log says so", wait_for(lambda: "event=msgauth_unavailable" in m.log_text() and
                                                 'reason="timeout" action=tempfail' in m.log_text(), 5))
    # Killed while a message waits: the link closes, the default applies at once (not after the timeout).
    os.kill(pid, signal.SIGSTOP)
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=send(m, UNTRUSTED, "dave@sender.example", "defkill", message("dave@sender.example", "killed"))))
    t.start()
    wait_for(lambda: False, 1.0)
    os.kill(pid, signal.SIGKILL)
    t.join(60)
    r = result.get("r")
    check("default: msgauth killed mid-message -> 451 4.7.0", r and r.code == 451 and r.text.startswith("4.7.0"),
          r and (r.code, r.text))
    check("default: the log names the closed link", 'reason="link closed" action=tempfail' in m.log_text())
    check("default: mtad restarts mta-msgauth", wait_for(lambda: msgauth_pid() not in (None, pid), 15))
    wait_for(lambda: smtpd_msgauth_links(m) >= 4, 10)
    # sendmail mail while mta-msgauth stands still: past the timeout the default (tempfail) leaves the
    # maildrop file where it is; it is picked up again, and signed, once mta-msgauth answers.
    pid = msgauth_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        r = sendmail(m, "smstopped", message("alice@sign.example", "sendmail while stopped"))
        check("default: sendmail mail with mta-msgauth stopped waits in the maildrop (tempfail)",
              r.returncode == 0 and wait_for(lambda: re.search(r"event=msgauth_unavailable qid=\w+ file=\S+ "
                                                               r'reason="timeout" action=tempfail', m.log_text()), 15)
              and not m.mailbox("smstopped"), (r.returncode, r.stderr))
    finally:
        os.kill(pid, signal.SIGCONT)
    msg = delivered(m, "smstopped", timeout=30)
    check("default: ... and is delivered signed once mta-msgauth answers", sig_algorithms(msg) == ["ed25519-sha256",
                                                                                                  "rsa-sha256"],
          msg[:600])
    m.reconfigure("msgauth_default_action = accept\n")
    wait_for(lambda: smtpd_msgauth_links(m) >= 6, 15)
    r = send_while_stopped(msgauth_pid(), TRUSTED, "alice@sign.example", "defaccept",
                           message("alice@sign.example", "accepted"))
    msg = delivered(m, "defaccept")
    check("default: msgauth_default_action = accept -> 250, queued unsigned",
          r.code == 250 and msg and not headers_named(msg, "DKIM-Signature"), (r.code, r.text, msg[:300]))
    check("default: logged as accept", 'reason="timeout" action=accept' in m.log_text())


def spf_action_tests(m, table, keys):
    # A key added to the table and a reload: mta-msgauth starts again and signs with it.
    with open(table, "a") as f:
        f.write("nokey.example n1 rsa %s\n" % keys["sign-rsa"])
    r = run([os.path.join(BIN, "mtamap"), "-t", "dkim", table], text=True)
    links = smtpd_msgauth_links(m)
    m.reconfigure("spf_action = reject_fail\n")
    wait_for(lambda: smtpd_msgauth_links(m) >= links + 2, 15)
    r = send(m, UNTRUSTED, "alice@exp.spf.example", "spfreject", message("x@spf.example", "spf reject"))
    check("spf_action = reject_fail: an SPF fail of MAIL FROM -> 550 5.7.23 with the domain's exp= text",
          r.code == 550 and r.text.startswith("5.7.23") and "not allowed from 127.0.0.9" in r.text, (r.code, r.text))
    r = send(m, UNTRUSTED, "alice@softfail.spf.example", "spfsoft", message("x@spf.example", "spf softfail"))
    check("spf_action = reject_fail: softfail is accepted", r.code == 250, (r.code, r.text))
    r = send(m, TRUSTED, "carol@nokey.example", "newkey", message("carol@nokey.example", "new key"))
    sigs = headers_named(delivered(m, "newkey"), "DKIM-Signature")
    check("reload: a key added to dkim_keys signs after the reload (d=nokey.example s=n1)",
          r.code == 250 and len(sigs) == 1 and "d=nokey.example" in sigs[0] and "s=n1" in sigs[0], sigs)


def bad_key_tests(m, tmp, keys):
    r = run([os.path.join(BIN, "mtad"), "-n", "-c", m.conf], text=True)
    check("mtad -n: the running configuration with its keys is valid", r.returncode == 0, r.stdout + r.stderr)
    src = os.path.join(tmp, "dkim_bad.txt")
    with open(src, "w") as f:
        f.write("# good, then a missing file, then a type that does not match the file\n"
                "sign.example r1 rsa %s\nbad.example s1 rsa %s\nbad.example s2 ed25519 %s\n"
                % (keys["sign-rsa"], os.path.join(tmp, "missing.key"), keys["sign-rsa"]))
    r = run([os.path.join(BIN, "mtamap"), "-t", "dkim", src], text=True)
    check("mtamap -t dkim builds the table", r.returncode == 0, r.stdout + r.stderr)
    conf = os.path.join(tmp, "bad.conf")
    with open(m.conf) as f, open(conf, "w") as g:
        g.write(f.read() + "dkim_keys = %s\n" % src.replace(".txt", ".lmdb"))
    r = run([os.path.join(BIN, "mtad"), "-n", "-c", conf], text=True)
    real = os.path.realpath(src)
    check("mtad -n: a missing key file is an error at FILE:LINE of the table source",
          r.returncode != 0 and ("%s:3: dkim_keys:" % real) in r.stderr and "missing.key" in r.stderr, r.stderr)
    check("mtad -n: a key of the wrong type is an error at its line",
          ("%s:4: dkim_keys:" % real) in r.stderr and "ed25519" in r.stderr, r.stderr)
    with open(src, "w") as f:
        f.write("sign.example r1 dsa /x\n")
    r = run([os.path.join(BIN, "mtamap"), "-t", "dkim", src], text=True)
    check("mtamap -t dkim: a bad key type is refused at its line", r.returncode == 1 and "dkim_bad.txt:1:" in r.stderr,
          r.stderr)


def main():
    tmp = os.path.join(TMP_ROOT, "msgauth")
    os.makedirs(tmp)
    keys, lines = {}, {}
    for name, domain, sel, alg in (("sign-rsa", "sign.example", "r1", "rsa"), ("sign-ed", "sign.example", "e1", "ed25519"),
                                   ("rsaonly", "rsaonly.example", "r1", "rsa"), ("edonly", "edonly.example", "e1", "ed25519"),
                                   ("sender-rsa", "sender.example", "r1", "rsa"), ("sender-ed", "sender.example", "e1", "ed25519"),
                                   ("dmarc-rsa", "dmarc.example", "r1", "rsa")):
        keys[name], lines[name] = mtadkim_keygen(tmp, domain, sel, alg)
    spf_pass = 'IN TXT "v=spf1 ip4:127.0.0.9 -all"'
    zones = {
        "sign.example": zone("sign.example", [lines["sign-rsa"], lines["sign-ed"]]),
        "rsaonly.example": zone("rsaonly.example", [lines["rsaonly"]]),
        "edonly.example": zone("edonly.example", [lines["edonly"]]),
        "nokey.example": zone("nokey.example", []),
        "sender.example": zone("sender.example", [lines["sender-rsa"], lines["sender-ed"], "@ " + spf_pass,
                                                  "huge._domainkey IN TXT " + txt("v=DKIM1; k=rsa; p=" + "A/+" * 2700),
                                                  'notakey._domainkey IN TXT "v=spf1 -all"']),
        "spf.example": spf_zone(),
        "dmarc.example": zone("dmarc.example", [lines["dmarc-rsa"], "@ " + spf_pass, "sub " + spf_pass,
                                                '_dmarc IN TXT "v=DMARC1; p=reject; sp=none"']),
        "other.example": zone("other.example", ["@ " + spf_pass]),
        "pct.example": zone("pct.example", ['_dmarc IN TXT "v=DMARC1; p=reject; pct=0"']),
        "quarantine.example": zone("quarantine.example", ['_dmarc IN TXT "v=DMARC1; p=quarantine"']),
        "strict.example": zone("strict.example", ["sub " + spf_pass, '_dmarc IN TXT "v=DMARC1; p=reject; aspf=s"']),
        "nodmarc.example": zone("nodmarc.example", []),
        "brand.co.uk": zone("brand.co.uk", ['_dmarc IN TXT "v=DMARC1; p=none; sp=reject"']),
    }
    table = os.path.join(tmp, "dkim_keys.txt")
    with open(table, "w") as f:
        for name in ("sign-rsa", "sign-ed", "rsaonly", "edonly"):
            domain = {"sign-rsa": "sign.example", "sign-ed": "sign.example"}.get(name, name + ".example")
            sel = "r1" if "rsa" in name else "e1"
            f.write("%s %s %s %s\n" % (domain, sel, "rsa" if "rsa" in name else "ed25519", keys[name]))
    r = run([os.path.join(BIN, "mtamap"), "-t", "dkim", table], text=True)
    if not check("mtamap -t dkim builds the key table", r.returncode == 0, r.stdout + r.stderr):
        return
    # Port 53: opendkim-testmsg asks the system resolver, which knows no other port.
    nsd = Nsd(tmp, zones, addr="127.53.%d.%d" % (os.getpid() % 250 + 1, int(time.time()) % 250 + 1), port=53)
    with Guard("msgauth") as g:
        g.cleanups.append(nsd.stop)
        if not check("nsd serves the test zones", nsd.wait_answering("host.spf.example", "127.0.0.9"),
                     nsd.query("host.spf.example")):
            return
        g.log = m = MTA(name="msgauth", msgauth_verify=True, extra=(
            "dns_forwarder = %s\ndns_insecure_domains = %s\nmynetworks = 127.0.0.1/32\n"
            "dkim_keys = %s\nmsgauth_timeout = 4s\ndmarc_action = enforce\n"
            % (nsd.forwarder(), " ".join(zones), table.replace(".txt", ".lmdb")))).start()
        g.cleanups.insert(0, m.stop)
        st = m.ctl("status").stdout
        check("mtactl status lists mta-msgauth running as _mtaauth",
              re.search(r"role=msgauth instance=0 pid=\d+ state=running", st) is not None, st)
        signing_tests(m, nsd, tmp)
        sendmail_tests(m, nsd, tmp)
        verify_tests(m, nsd, keys)
        spf_tests(m, nsd)
        dmarc_tests(m, nsd, keys)
        quarantine_tests(m)
        bad_key_tests(m, tmp, keys)
        default_action_tests(m)
        spf_action_tests(m, table, keys)


if __name__ == "__main__":
    main()
    finish()
