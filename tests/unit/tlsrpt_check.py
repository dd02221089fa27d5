#!/usr/bin/python3
# Checks an RFC 8460 TLS report message (common/tlsrpt_report.cpp's report_message) with Python's own
# email, gzip and json modules, an implementation independent of ours: CRLF lines of at most 998 octets,
# multipart/report with report-type=tlsrpt, the TLS-Report-* headers, one application/tlsrpt+gzip part
# named by RFC 8460 section 5.1, and every required report field with its JSON type. Prints the report
# (json.dumps, sort_keys) on stdout; on any problem exits 1 with the reason on stderr.
# Usage: /usr/bin/python3 tests/unit/tlsrpt_check.py MESSAGE-FILE (test_common_tlsrpt.cpp and the integration suites run it).
import email
import email.policy
import gzip
import json
import re
import sys
import zlib

RESULT_TYPES = {
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted",
    "validation-failure", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
    "tlsa-invalid", "dnssec-invalid", "dane-required",
}
POLICY_TYPES = {"sts", "tlsa", "no-policy-found"}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
FILENAME = re.compile(r"^[A-Za-z0-9._-]+![A-Za-z0-9._-]+!\d+!\d+(![A-Za-z0-9]+)?\.json\.gz$")


class Bad(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Bad(what)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def member(obj, key, kind, where, required=True):
    need(isinstance(obj, dict), where + " is not an object")
    if key not in obj:
        need(not required, "%s lacks %r" % (where, key))
        return None
    v = obj[key]
    if kind == "int":
        need(is_int(v), "%s.%s is not a non-negative integer" % (where, key))
    elif kind == "strings":
        need(isinstance(v, list) and all(isinstance(s, str) for s in v),
             "%s.%s is not an array of strings" % (where, key))
    else:
        need(isinstance(v, kind), "%s.%s is not a %s" % (where, key, kind.__name__))
    return v


def check_report(r):
    member(r, "organization-name", str, "report")
    dr = member(r, "date-range", dict, "report")
    for k in ("start-datetime", "end-datetime"):
        need(DATETIME.match(member(dr, k, str, "date-range")), "date-range.%s is not RFC 3339 UTC" % k)
    member(r, "contact-info", str, "report")
    member(r, "report-id", str, "report")
    policies = member(r, "policies", list, "report")
    for i, p in enumerate(policies):
        where = "policies[%d]" % i
        pol = member(p, "policy", dict, where)
        need(member(pol, "policy-type", str, where + ".policy") in POLICY_TYPES, where + ": unknown policy-type")
        member(pol, "policy-string", "strings", where + ".policy", required=False)
        member(pol, "policy-domain", str, where + ".policy")
        member(pol, "mx-host", "strings", where + ".policy", required=False)
        summary = member(p, "summary", dict, where)
        failures = member(summary, "total-failure-session-count", "int", where + ".summary")
        member(summary, "total-successful-session-count", "int", where + ".summary")
        details = member(p, "failure-details", list, where, required=False) or []
        counted = 0
        for k, d in enumerate(details):
            dw = "%s.failure-details[%d]" % (where, k)
            need(member(d, "result-type", str, dw) in RESULT_TYPES, dw + ": unknown result-type")
            counted += member(d, "failed-session-count", "int", dw)
            for f in ("sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo", "receiving-ip",
                      "additional-information", "failure-reason-code"):
                need(member(d, f, str, dw, required=False) != "", "%s.%s is empty" % (dw, f))
        need(counted <= failures, where + ": failure-details count more than total-failure-session-count")


def check(path):
    raw = open(path, "rb").read()
    lines = raw.split(b"\r\n")
    need(lines[-1] == b"", "the message does not end with CRLF")
    for n, line in enumerate(lines, 1):
        need(b"\n" not in line and b"\r" not in line, "bare CR or LF on line %d" % n)
        need(len(line) <= 998, "line %d is longer than 998 octets" % n)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    need(not msg.defects, "message defects: %r" % msg.defects)
    need(msg.get_content_type() == "multipart/report", "not multipart/report")
    need(msg.get_param("report-type") == "tlsrpt", "report-type is not tlsrpt")
    for h in ("From", "To", "Date", "Message-ID", "Subject", "TLS-Report-Domain", "TLS-Report-Submitter"):
        need(msg[h], "no %s header" % h)
    domain, submitter = str(msg["TLS-Report-Domain"]), str(msg["TLS-Report-Submitter"])
    need(re.match(r"^Report Domain:\s+\S+\s+Submitter:\s+\S+\s+Report-ID:\s+<[^<>]*>$", str(msg["Subject"])),
         "Subject is not 'Report Domain: D Submitter: S Report-ID: <ID>'")
    parts = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    need(len(parts) == 1, "%d application/tlsrpt+gzip parts" % len(parts))
    part = parts[0]
    filename = part.get_filename() or ""
    need(FILENAME.match(filename), "bad filename %r" % filename)
    fields = filename[: -len(".json.gz")].split("!")
    need(fields[0] == submitter and fields[1] == domain, "filename does not name submitter and domain")
    need(part.get_content_disposition() == "attachment", "the report is not an attachment")
    report = json.loads(gzip.decompress(part.get_payload(decode=True)).decode("utf-8"))
    check_report(report)
    for p in report["policies"]:
        need(p["policy"]["policy-domain"] == domain, "a policy of another domain")
    return report


def main():
    if len(sys.argv) != 2:
        print("usage: tlsrpt_check.py MESSAGE-FILE", file=sys.stderr)
        return 1
    try:
        report = check(sys.argv[1])
    except (Bad, OSError, ValueError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        print("tlsrpt_check: %s: %s" % (sys.argv[1], e), file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
