#!/usr/bin/python3
# Regenerates msgauth_spf_cases.h: a fake DNS zone of SPF records and a table of checks whose expected
# results come from pyspf (Debian python3-spf), an implementation independent of ours, run over exactly
# the same zone. test_msgauth_spf.cpp runs our evaluator over the table. Run with /usr/bin/python3.
import os, spf

ZONE = [  # name, type, value
    ("pass-ip4.example", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
    ("softfail.example", "TXT", "v=spf1 ~all"),
    ("neutral.example", "TXT", "v=spf1 ?all"),
    ("empty.example", "TXT", "v=spf1"),
    ("none.example", "TXT", "some unrelated text"),
    ("two.example", "TXT", "v=spf1 -all"),
    ("two.example", "TXT", "v=spf1 +all"),
    ("a.example", "TXT", "v=spf1 a -all"),
    ("a.example", "A", "192.0.2.10"),
    ("a-cidr.example", "TXT", "v=spf1 a:host.a-cidr.example/24 -all"),
    ("host.a-cidr.example", "A", "192.0.2.99"),
    ("a6.example", "TXT", "v=spf1 a//64 -all"),
    ("a6.example", "AAAA", "2001:db8::1"),
    ("mx.example", "TXT", "v=spf1 mx -all"),
    ("mx.example", "MX", "10 mail.mx.example"),
    ("mail.mx.example", "A", "192.0.2.10"),
    ("mx-cidr.example", "TXT", "v=spf1 mx/24 -all"),
    ("mx-cidr.example", "MX", "5 mail.mx-cidr.example"),
    ("mail.mx-cidr.example", "A", "192.0.2.200"),
    ("mx-many.example", "TXT", "v=spf1 mx -all"),
] + [("mx-many.example", "MX", "%d m%d.mx-many.example" % (i, i)) for i in range(11)] + [
    ("include.example", "TXT", "v=spf1 include:pass-ip4.example -all"),
    ("include-none.example", "TXT", "v=spf1 include:none.example -all"),
    ("include-nx.example", "TXT", "v=spf1 include:nowhere.example ip4:192.0.2.10 -all"),
    ("loop.example", "TXT", "v=spf1 include:loop.example -all"),
    ("loop-a.example", "TXT", "v=spf1 include:loop-b.example -all"),
    ("loop-b.example", "TXT", "v=spf1 include:loop-a.example -all"),
    ("chain1.example", "TXT", "v=spf1 include:chain2.example -all"),
    ("chain2.example", "TXT", "v=spf1 include:chain3.example ~all"),
    ("chain3.example", "TXT", "v=spf1 ip4:192.0.2.10 ?all"),
    ("redirect.example", "TXT", "v=spf1 redirect=pass-ip4.example"),
    ("redirect-none.example", "TXT", "v=spf1 redirect=none.example"),
    ("redirect-late.example", "TXT", "v=spf1 ip4:192.0.2.10 redirect=softfail.example"),
    ("redirect-twice.example", "TXT", "v=spf1 redirect=a.example redirect=mx.example"),
    ("exists.example", "TXT", "v=spf1 exists:%{ir}.%{v}.bl.exists.example -all"),
    ("10.2.0.192.in-addr.bl.exists.example", "A", "127.0.0.2"),
    ("macro-l.example", "TXT", "v=spf1 exists:%{l1r-}.users.macro-l.example -all"),
    ("john.users.macro-l.example", "A", "127.0.0.2"),
    ("sub.macro-d2.example", "TXT", "v=spf1 exists:%{d2}.trusted.example -all"),
    ("macro-d2.example.trusted.example", "A", "127.0.0.2"),
    ("upper.example", "TXT", "v=spf1 exists:%{L}.upper.example -all"),
    ("ip6.example", "TXT", "v=spf1 ip6:2001:db8::/32 -all"),
    ("void.example", "TXT", "v=spf1 a:v1.void.example a:v2.void.example a:v3.void.example -all"),
    ("void2.example", "TXT", "v=spf1 a:v1.void.example a:v2.void.example ip4:192.0.2.10 -all"),
    ("toomany.example", "TXT", "v=spf1 " + " ".join("a:h%d.toomany.example" % i for i in range(11)) + " ip4:192.0.2.10 -all"),
    ("ten.example", "TXT", "v=spf1 " + " ".join("a:h%d.toomany.example" % i for i in range(10)) + " ip4:192.0.2.10 -all"),
] + [("h%d.toomany.example" % i, "A", "203.0.113.1") for i in range(11)] + [
    ("badip.example", "TXT", "v=spf1 ip4:192.0.2.300 -all"),
    ("badcidr.example", "TXT", "v=spf1 ip4:192.0.2.0/33 -all"),
    ("unknown-mech.example", "TXT", "v=spf1 foo -all"),
    ("bad-macro.example", "TXT", "v=spf1 exists:%{x}.bad-macro.example -all"),
    ("no-toplabel.example", "TXT", "v=spf1 a:foo -all"),
    ("exp.example", "TXT", "v=spf1 -all exp=explain.exp.example"),
    ("explain.exp.example", "TXT", "%{i} is not one of %{d}'s servers"),
    ("ptr.example", "TXT", "v=spf1 ptr -all"),
    ("10.2.0.192.in-addr.arpa", "PTR", "mail.ptr.example"),
    ("mail.ptr.example", "A", "192.0.2.10"),
    ("ptr-fake.example", "TXT", "v=spf1 ptr -all"),
    ("11.2.0.192.in-addr.arpa", "PTR", "host.ptr-fake.example"),
    ("host.ptr-fake.example", "A", "192.0.2.99"),
    ("pmacro.example", "TXT", "v=spf1 exists:%{p}.pm.example -all"),
    ("mail.ptr.example.pm.example", "A", "127.0.0.2"),
    ("temperror.example", "TXT", "v=spf1 a:broken.temperror.example -all"),
    ("include-temp.example", "TXT", "v=spf1 include:servfail.example -all"),
    ("helo.example", "TXT", "v=spf1 ip4:192.0.2.10 -all"),
    ("not-first.example", "TXT", "v=spf1 -ip4:192.0.2.10 +all"),
    ("plus-all.example", "TXT", "v=spf1 +all"),
    ("modifier.example", "TXT", "v=spf1 foo=bar -all"),
    ("spaces.example", "TXT", "v=spf1  ip4:192.0.2.10   -all "),
    ("case.example", "TXT", "V=SPF1 IP4:192.0.2.10 -ALL"),
    ("spf10.example", "TXT", "v=spf10 -all"),
    ("bad-exp.example", "TXT", "v=spf1 -all exp=missing.bad-exp.example"),
    ("exists-void.example", "TXT", "v=spf1 exists:nothing.exists-void.example ?all"),
]
SERVFAIL = {"broken.temperror.example", "servfail.example"}

def lookup(name, qtype, strict=True, timeout=30):
    name = name.lower().rstrip(".")
    if name in SERVFAIL:
        raise spf.TempError("DNS servfail")
    out = []
    for n, t, v in ZONE:
        if n != name or t != qtype:
            continue
        if t == "MX":
            pref, host = v.split(" ")
            out.append(((name, t), (int(pref), host)))
        elif t == "TXT":
            out.append(((name, t), [v.encode()]))
        else:
            out.append(((name, t), v))
    return out
spf.DNSLookup = lookup

CASES = [  # ip, MAIL FROM, HELO
    ("192.0.2.10", "user@pass-ip4.example", "mta.client.example"),
    ("198.51.100.7", "user@pass-ip4.example", "mta.client.example"),
    ("192.0.2.10", "user@softfail.example", "h.example"),
    ("192.0.2.10", "user@neutral.example", "h.example"),
    ("192.0.2.10", "user@empty.example", "h.example"),
    ("192.0.2.10", "user@none.example", "h.example"),
    ("192.0.2.10", "user@nope.example", "h.example"),
    ("192.0.2.10", "user@two.example", "h.example"),
    ("192.0.2.10", "user@a.example", "h.example"),
    ("198.51.100.7", "user@a.example", "h.example"),
    ("192.0.2.10", "user@a-cidr.example", "h.example"),
    ("2001:db8::10", "user@a6.example", "h.example"),
    ("2001:db9::10", "user@a6.example", "h.example"),
    ("192.0.2.10", "user@mx.example", "h.example"),
    ("192.0.2.10", "user@mx-cidr.example", "h.example"),
    ("192.0.2.10", "user@mx-many.example", "h.example"),
    ("192.0.2.10", "user@include.example", "h.example"),
    ("198.51.100.7", "user@include.example", "h.example"),
    ("192.0.2.10", "user@include-none.example", "h.example"),
    ("192.0.2.10", "user@include-nx.example", "h.example"),
    ("192.0.2.10", "user@loop.example", "h.example"),
    ("192.0.2.10", "user@loop-a.example", "h.example"),
    ("192.0.2.10", "user@chain1.example", "h.example"),
    ("198.51.100.7", "user@chain1.example", "h.example"),
    ("192.0.2.10", "user@redirect.example", "h.example"),
    ("198.51.100.7", "user@redirect.example", "h.example"),
    ("192.0.2.10", "user@redirect-none.example", "h.example"),
    ("192.0.2.10", "user@redirect-late.example", "h.example"),
    ("198.51.100.7", "user@redirect-late.example", "h.example"),
    ("192.0.2.10", "user@redirect-twice.example", "h.example"),
    ("192.0.2.10", "user@exists.example", "h.example"),
    ("192.0.2.11", "user@exists.example", "h.example"),
    ("192.0.2.10", "john-smith@macro-l.example", "h.example"),
    ("192.0.2.10", "jane-smith@macro-l.example", "h.example"),
    ("192.0.2.10", "user@sub.macro-d2.example", "h.example"),
    ("192.0.2.10", "a+b@upper.example", "h.example"),
    ("2001:db8:1::5", "user@ip6.example", "h.example"),
    ("192.0.2.10", "user@ip6.example", "h.example"),
    ("::ffff:192.0.2.10", "user@pass-ip4.example", "h.example"),
    ("192.0.2.10", "user@void.example", "h.example"),
    ("192.0.2.10", "user@void2.example", "h.example"),
    ("192.0.2.10", "user@toomany.example", "h.example"),
    ("192.0.2.10", "user@ten.example", "h.example"),
    ("192.0.2.10", "user@badip.example", "h.example"),
    ("192.0.2.10", "user@badcidr.example", "h.example"),
    ("192.0.2.10", "user@unknown-mech.example", "h.example"),
    ("192.0.2.10", "user@bad-macro.example", "h.example"),
    ("192.0.2.10", "user@no-toplabel.example", "h.example"),
    ("192.0.2.10", "user@exp.example", "h.example"),
    ("192.0.2.10", "user@ptr.example", "h.example"),
    ("192.0.2.11", "user@ptr-fake.example", "h.example"),
    ("192.0.2.10", "user@pmacro.example", "h.example"),
    ("192.0.2.10", "user@temperror.example", "h.example"),
    ("192.0.2.10", "user@include-temp.example", "h.example"),
    ("192.0.2.10", "user@servfail.example", "h.example"),
    ("192.0.2.10", "", "helo.example"),
    ("198.51.100.7", "", "helo.example"),
    ("192.0.2.10", "user@not-first.example", "h.example"),
    ("198.51.100.7", "user@plus-all.example", "h.example"),
    ("192.0.2.10", "user@modifier.example", "h.example"),
    ("192.0.2.10", "user@spaces.example", "h.example"),
    ("192.0.2.10", "user@case.example", "h.example"),
    ("192.0.2.10", "user@spf10.example", "h.example"),
    ("192.0.2.10", "user@bad-exp.example", "h.example"),
    ("192.0.2.10", "user@exists-void.example", "h.example"),
    ("192.0.2.10", "user@single-label", "h.example"),
]

def c(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

lines = ["// Generated by msgauth_spf_pyspf.py: a fake zone and SPF checks with the results pyspf gives for them.",
         "#pragma once", "", "namespace spf_cases {", "",
         "struct Rr {", "    const char* name;", "    const char* type;", "    const char* value;", "};", "",
         "inline constexpr Rr kZone[] = {"]
lines += ["    {%s, %s, %s}," % (c(n), c(t), c(v)) for n, t, v in ZONE]
lines += ["};", "", "inline constexpr const char* kServfail[] = {" + ", ".join(c(s) for s in sorted(SERVFAIL)) + "};", "",
          "struct Case {", "    const char* ip;", "    const char* sender;", "    const char* helo;",
          "    const char* result;", "    const char* explanation;", "};", "",
          "inline constexpr Case kCases[] = {"]
for ip, s, h in CASES:
    r, code, exp = spf.query(i=ip, s=s, h=h).check()
    explanation = exp if r == "fail" and exp != spf.EXPLANATIONS["fail"] else ""
    lines.append("    {%s, %s, %s, %s, %s}," % (c(ip), c(s), c(h), c(r), c(explanation)))
    print("%-20s %-30s %-14s %-10s %s" % (ip, s, h, r, explanation))
lines += ["};", "", "}  // namespace spf_cases", ""]
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "msgauth_spf_cases.h"), "w").write("\n".join(lines))
print(len(CASES), "cases")
