// libFuzzer target for the MTA side of the milter protocol as a whole: a real milter::Chain, on a real
// event loop, talks over socketpairs to one or two fake milters whose replies are the fuzz input. The
// chain is driven through a session (connect, HELO, MAIL, RCPT, maybe an unknown command, DATA, the
// message or an abort and a second transaction) and must never crash, leak memory or descriptors, hang,
// call its owner from inside the owner's call, or give the session a verdict or a message that breaks
// the promises of milter_client.h.
//
// Input layout (missing bytes read as 0):
//   byte 0   bit 0: two milters (else one); bits 1-2: milter_default_action (tempfail, accept, reject,
//            tempfail); bit 3: the next step is started from inside milter_done (else from the loop);
//            bit 4: abort after DATA, then a second transaction; bit 5: an unknown command after RCPT;
//            bits 6-7: which message the content step gets (3: the large one with address family
//            "unknown", else one whose header block ends without an empty line)
//   byte 1   bit 0: destroy the chain from inside the last milter_done; bit 1: message_size_limit 1k;
//            bits 2-3: the client's address family; bits 4-7: 12..15 destroy the chain right after
//            starting connect, HELO, MAIL or RCPT
//   per milter, 6 bytes: flags (bit 0: socket_failed instead of a socket; bit 1: no automatic OPTNEG,
//            the script brings its own; bits 2-3: version 6, 2, 3, 6; bits 4+5: flags not masked to our
//            offer; bit 6: macro lists in the OPTNEG; bit 7: silent, see below), actions (2 bytes),
//            protocol flags (3 bytes)
//   the rest: pieces, each [ctl][len][len bytes]: ctl bit 0 picks the milter, bit 1 lets the piece go out
//            unasked between two steps, bit 2 half-closes the milter's socket after it.
// A fake milter sends its OPTNEG reply at once, then its next piece for each command that the agreement
// says it must answer. When the loop has nothing left to do while a step is open, the milter that was
// asked last gets its next piece or, with none left, its socket half-closed (EOF), so that no step ever
// waits for the chain's timeouts: a step still open when every milter is done or gone is a hang. A
// silent milter instead stops reading and stays connected once its script is used up; when nothing but
// a timeout can end the step, the chain's earliest timer is fired at once (no real waiting), and a step
// that waits for a silent milter without any timer armed is a hang too.
#include <dirent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/milter_client.h"
#include "common/milter_proto.h"

using namespace mta;
using namespace mta::milter;

namespace {

// What the chain offers (milter_client.cpp): every NO* and NR* flag, SKIP and HDR_LEADSPC, not RCPT_REJ.
constexpr uint32_t kOfferProtocol = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY |
                                    SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA |
                                    SMFIP_SKIP | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                                    SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC;
constexpr int kMaxLoops = 100000;

bool g_verbose = false;

// MILTER_FUZZ_VERBOSE=1 in the environment: what happens, step by step, and the chain's log lines.
#define TRACE(...)                                         \
    do {                                                   \
        if (g_verbose) std::fprintf(stderr, __VA_ARGS__);  \
    } while (0)

// A broken invariant aborts (libFuzzer saves the input), saying which one.
void fail(const char* why) {
    std::fprintf(stderr, "fuzz_milter_chain: invariant broken: %s\n", why);
    std::abort();
}
#define CHECK(cond)               \
    do {                          \
        if (!(cond)) fail(#cond); \
    } while (0)

struct Input {
    const uint8_t* p;
    std::size_t n;
    uint8_t byte() {
        if (n == 0) return 0;
        n--;
        return *p++;
    }
    uint32_t be(int bytes) {
        uint32_t v = 0;
        for (int i = 0; i < bytes; i++) v = (v << 8) | byte();
        return v;
    }
    std::string take(std::size_t len) {
        len = std::min(len, n);
        std::string s(reinterpret_cast<const char*>(p), len);
        p += len, n -= len;
        return s;
    }
};

std::string u32(uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; i++) s[std::size_t(i)] = char((v >> (24 - 8 * i)) & 0xff);
    return s;
}

std::string packet(char code, const std::string& data) { return u32(uint32_t(data.size() + 1)) + code + data; }

// ---- the messages the content step gets, each a memfd opened once, and what Message::write makes of
// each when no milter changed it

constexpr int kMessages = 5;
constexpr int kLarge = 3;

std::string message_text(int which) {
    switch (which) {
    case 0:
        return "From: <a@example.org>\r\nTo: <b@example.net>\r\nSubject: a test\r\n\tfolded\r\nX-Empty:\r\n"
               "X-Tab:\tvalue\r\n\r\nHello\r\nworld\r\n.dot\r\n";
    case 1: return "Subject: only headers\r\nX-A: 1\r\n";
    case 2: return "Subject: x\r\nsubject: y\r\n\r\n";
    case kLarge: {
        // More body chunks than fit under the chain's output limit (256k): with NR_BODY it must wait
        // for its output to drain.
        std::string m = "Subject: large\r\nX-B: 2\r\n\r\n";
        std::string line(76, 'x');
        line += "\r\n";
        while (m.size() < 4 * kBodyChunk + 100) m += line;
        return m;
    }
    default: return "Subject: s\r\nX-Y: z\r\nnot a header\r\n\r\nbody\r\n";
    }
}

// The header block ends at the first line that is no header field; the empty line goes in before it.
std::string unchanged_output(int which) {
    std::string m = message_text(which);
    if (which != kMessages - 1) return m;
    std::size_t at = m.find("not a header");
    return m.substr(0, at) + "\r\n" + m.substr(at);
}

struct Messages {
    std::string text[kMessages];
    std::string unchanged[kMessages];
    int fd[kMessages];
    Messages() {
        for (int i = 0; i < kMessages; i++) {
            text[i] = message_text(i);
            unchanged[i] = unchanged_output(i);
            fd[i] = memfd_create("fuzz-message", MFD_CLOEXEC);
            if (fd[i] < 0 || pwrite(fd[i], text[i].data(), text[i].size(), 0) != ssize_t(text[i].size())) std::abort();
        }
    }
};

const Messages& messages() {
    static const Messages* m = new Messages();
    return *m;
}

// ---- configurations, parsed once each

std::shared_ptr<const Config> config(int milters, int action, bool small_limit) {
    static std::map<int, std::shared_ptr<const Config>> cache;
    int key = milters * 100 + action * 10 + (small_limit ? 1 : 0);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    static const char* const actions[4] = {"tempfail", "accept", "reject", "tempfail"};
    std::string text = "smtpd_milters = inet:127.0.0.1:9";
    if (milters == 2) text += " inet:127.0.0.1:10";
    text += "\nmilter_default_action = ";
    text += actions[action];
    text += "\nmilter_command_timeout = 1s\nmilter_content_timeout = 1s\nmilter_connect_timeout = 1s\n";
    if (small_limit) text += "message_size_limit = 1k\n";
    auto cfg = std::make_shared<Config>();
    std::vector<ConfigError> errors;
    if (!parse_config(text, "fuzz", *cfg, errors) || cfg->smtpd_milters.size() != std::size_t(milters)) {
        for (const ConfigError& e : errors) std::fprintf(stderr, "%s\n", e.str().c_str());
        std::abort();
    }
    cache[key] = cfg;
    return cfg;
}

int open_fds() {
    DIR* d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

// ---- RFC 3463 and the other shapes a verdict must have

bool enhanced_ok(const std::string& e, int code) {
    if (e.size() < 5 || e[0] != char('0' + code / 100) || e[1] != '.') return false;
    std::size_t i = 2;
    for (int part = 0; part < 2; part++) {
        std::size_t start = i;
        while (i < e.size() && i - start < 3 && e[i] >= '0' && e[i] <= '9') i++;
        if (i == start) return false;
        if (part == 0) {
            if (i == e.size() || e[i] != '.') return false;
            i++;
        }
    }
    return i == e.size();
}

bool printable(const std::string& s) {
    for (char c : s)
        if (c != '\t' && (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)) return false;
    return true;
}

bool no_crlfnul(const std::string& s) { return s.find_first_of(std::string("\r\n\0", 3)) == std::string::npos; }

// A header field as it goes into the message: Name ':' value, CRLF at the end, CR only in CRLF, every
// inner CRLF a fold (followed by SP or HTAB), no NUL.
void check_header(const Header& h) {
    CHECK(!h.name.empty() && h.name.size() <= kMaxHeaderName);
    for (char c : h.name) CHECK(c > ' ' && c < 0x7f && c != ':');
    CHECK(h.raw.size() >= h.name.size() + 3 && h.raw.compare(0, h.name.size(), h.name) == 0);
    CHECK(h.raw[h.name.size()] == ':');
    CHECK(h.raw.compare(h.raw.size() - 2, 2, "\r\n") == 0);
    for (std::size_t i = 0; i < h.raw.size(); i++) {
        char c = h.raw[i];
        CHECK(c != '\0');
        if (c == '\n') CHECK(i > 0 && h.raw[i - 1] == '\r');
        if (c == '\r') {
            CHECK(i + 1 < h.raw.size() && h.raw[i + 1] == '\n');
            if (i + 2 < h.raw.size()) CHECK(h.raw[i + 2] == ' ' || h.raw[i + 2] == '\t');
        }
    }
}

// A new body as the message gets it: every line end (CR, LF or CRLF) a CRLF, the last line terminated.
std::string crlf_body(const std::vector<std::string>& pieces, std::size_t count) {
    std::string in, out;
    for (std::size_t i = 0; i < count; i++) in += pieces[i];
    for (std::size_t i = 0; i < in.size(); i++) {
        if (in[i] == '\r' || in[i] == '\n') {
            out += "\r\n";
            if (in[i] == '\r' && i + 1 < in.size() && in[i + 1] == '\n') i++;
        } else {
            out += in[i];
        }
    }
    if (!out.empty() && out.back() != '\n') out += "\r\n";
    return out;
}

// The whole file, in a buffer kept from run to run: a fresh one for the large message would cost a
// new mapping and its page faults every time.
const std::string& read_all(int fd) {
    static std::string buf;
    struct stat st {};
    CHECK(fstat(fd, &st) == 0);
    buf.resize(std::size_t(st.st_size));
    for (std::size_t got = 0; got < buf.size();) {
        ssize_t n = pread(fd, buf.data() + got, buf.size() - got, off_t(got));
        CHECK(n > 0);
        got += std::size_t(n);
    }
    return buf;
}

// ---- the session

enum class Step { connect, helo, mail, rcpt, unknown, data, content, abort };

struct Piece {
    std::string bytes;
    bool unasked = false;
    bool close = false;
};

struct MilterCfg {
    bool socket_fails = false;
    bool auto_optneg = true;
    bool silent = false;
    std::string optneg;  // the automatic OPTNEG reply
};

struct Harness;

// One fake milter: our end of the socketpair.
struct Fake {
    Harness* h = nullptr;
    std::size_t index = 0;
    UniqueFd fd;
    EventPtr read_ev, write_ev;
    std::deque<Piece> pieces;
    std::string out;            // not yet written
    bool shut = false;          // half-closed, or will be once `out` is written
    bool gone = false;          // the chain closed its end, or ours failed
    bool silent = false;        // once the script is used up: reads nothing more and never closes
    bool stalled = false;       // silent and its script used up: it reads no more
    // What the chain sends: packet heads parsed, data skipped.
    unsigned char head[5] = {};
    std::size_t head_len = 0;
    std::size_t skip = 0;
    char cmd = 0;
    bool first_cmd = true;
    bool auto_optneg = true;
    // What we send, decoded as the chain decodes it (same limits): the agreement the chain made from
    // our OPTNEG, and every new body we sent.
    ReplyDecoder self;
    bool first_reply = true;
    bool agreed_known = false;
    Agreement agreed;
    std::vector<std::string> replbody;

    ~Fake() {
        read_ev.reset();
        write_ev.reset();
    }

    void note_sent(std::string_view bytes) {
        for (;;) {
            Reply r;
            ReplyDecoder::Status s = self.next(bytes, r);
            if (s != ReplyDecoder::Status::reply) return;
            if (r.code == SMFIR_REPLBODY) replbody.push_back(std::move(r.body));
            if (!first_reply) continue;
            first_reply = false;
            std::string err;
            agreed_known = negotiate(Offer{kVersion, SMFIF_ALL, kOfferProtocol}, r, agreed, err);
        }
    }

    void flush() {
        while (!out.empty() && !gone) {
            ssize_t n = ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                event_add(write_ev.get(), nullptr);
                return;
            }
            if (n < 0) {  // EPIPE, ECONNRESET: the chain is gone
                gone = true;
                out.clear();
                break;
            }
            out.erase(0, std::size_t(n));
        }
        event_del(write_ev.get());
        if (shut && !gone) ::shutdown(fd.get(), SHUT_WR);
    }

    void write(const std::string& bytes) {
        if (shut || gone) return;
        note_sent(bytes);
        out += bytes;
        flush();
    }

    void close_write() {
        if (shut) return;
        TRACE("  milter %zu: half-close\n", index);
        shut = true;
        if (out.empty() && !gone) ::shutdown(fd.get(), SHUT_WR);
    }

    // The next piece of the script, or with none left a half-close; false when there was nothing to do
    // (a silent milter then falls silent, which changes nothing the chain could see at once).
    bool send_next() {
        if (shut || gone || stalled) return false;
        if (pieces.empty()) {
            if (silent) {
                stall();
                return false;
            }
            close_write();
            return true;
        }
        Piece p = std::move(pieces.front());
        pieces.pop_front();
        TRACE("  milter %zu: piece of %zu bytes%s\n", index, p.bytes.size(), p.close ? ", then EOF" : "");
        write(p.bytes);
        if (p.close) close_write();
        return true;
    }

    void stall() {
        TRACE("  milter %zu: falls silent\n", index);
        stalled = true;
        event_del(read_ev.get());
    }

    void on_command(char c);
    void on_readable();
    static void read_cb(evutil_socket_t, short, void* arg) { static_cast<Fake*>(arg)->on_readable(); }
    static void write_cb(evutil_socket_t, short, void* arg) { static_cast<Fake*>(arg)->flush(); }
};

struct Deferred {
    Harness* h = nullptr;
    std::size_t index = 0;
    UniqueFd fd;    // the chain's end, until handed over
    bool fails = false;
    EventPtr ev;
    static void cb(evutil_socket_t, short, void* arg);
};

struct Harness final : Owner {
    event_base* base = nullptr;
    std::unique_ptr<Chain> chain;
    std::vector<MilterCfg> mcfg;
    std::vector<std::unique_ptr<Fake>> fakes;
    std::vector<std::unique_ptr<Deferred>> deferred;
    std::vector<std::string> specs;
    EventPtr idle_ev;

    std::vector<Step> plan;
    std::size_t plan_pos = 0;
    bool nested = false;          // next step from inside milter_done
    bool destroy_in_done = false;
    unsigned destroy_step = 0;    // destroy the chain right after starting this step (1: connect)
    int message = 0;

    unsigned started = 0, done = 0;
    bool awaiting = false;        // a step is open
    Step current = Step::connect;
    bool in_call = false;         // inside a call of ours into the chain
    bool stopped = false;         // a verdict other than pass, or the plan is through
    bool destroyed = false;
    bool loop_progress = false;   // the idle callback found something to do
    bool sent_unasked = false;    // it sent a piece between two steps: the chain reads it first
    std::size_t last_asked = 0;
    bool asked_any = false;

    ~Harness() {
        chain.reset();
        deferred.clear();
        fakes.clear();
        idle_ev.reset();
    }

    // ---- Owner
    void milter_socket(std::size_t index) override {
        CHECK(chain && in_call && current == Step::connect);
        CHECK(index < mcfg.size());
        for (auto& d : deferred) CHECK(d->index != index);  // once per milter
        auto d = std::make_unique<Deferred>();
        d->h = this;
        d->index = index;
        d->ev.reset(event_new(base, -1, 0, Deferred::cb, d.get()));
        if (mcfg[index].socket_fails) {
            d->fails = true;
        } else {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
            d->fd.reset(sv[0]);
            auto f = std::make_unique<Fake>();
            f->h = this;
            f->index = index;
            f->fd.reset(sv[1]);
            f->auto_optneg = mcfg[index].auto_optneg;
            f->silent = mcfg[index].silent;
            f->read_ev.reset(event_new(base, sv[1], EV_READ | EV_PERSIST, Fake::read_cb, f.get()));
            f->write_ev.reset(event_new(base, sv[1], EV_WRITE, Fake::write_cb, f.get()));
            event_add(f->read_ev.get(), nullptr);
            fakes[index] = std::move(f);
            if (mcfg[index].auto_optneg) fakes[index]->write(mcfg[index].optneg);
        }
        event_active(d->ev.get(), EV_TIMEOUT, 0);
        deferred.push_back(std::move(d));
    }

    std::optional<std::string> milter_macro(std::string_view name) const override {
        CHECK(chain != nullptr);
        if (name == "j") return std::string("mx.example.org");
        if (name == "{client_addr}") return std::string("192.0.2.1");
        if (name == "{client_name}") return std::string("unknown");
        if (name == "i") return std::string("4F2A1B3C");
        if (name == "{mail_addr}") return std::string("a@example.org");
        if (name == "{rcpt_addr}") return std::string("b@example.net");
        if (name == "{empty}") return std::string();
        return std::nullopt;
    }

    std::string milter_log_context() const override { return " client=192.0.2.1 qid=4F2A1B3C"; }

    void milter_done(Stage stage, const Verdict& v) override {
        CHECK(chain && !destroyed);
        CHECK(!in_call);            // never from inside our own call
        CHECK(awaiting);            // exactly once per step
        CHECK(done + 1 == started);
        done++;
        awaiting = false;
        CHECK(!chain->busy());
        CHECK(stage == expected_stage());
        TRACE("done %s: kind=%d code=%d enhanced=%s milter=%s failure=%d\n", stage_name(stage), int(v.kind), v.code,
              v.enhanced.c_str(), v.milter.c_str(), int(v.failure));
        check_verdict(v);
        if (stage == Stage::content) {
            CHECK(!chain->in_message());
            if (v.kind == Verdict::Kind::pass) check_message();
        } else if (v.kind == Verdict::Kind::pass &&
                   (stage == Stage::mail || stage == Stage::rcpt || stage == Stage::data)) {
            CHECK(chain->in_message());
        }
        if (v.kind != Verdict::Kind::pass) {
            stopped = true;
            // As mta-smtpd does: a refused MAIL leaves no transaction for the milters.
            if (stage == Stage::mail && (v.kind == Verdict::Kind::reject || v.kind == Verdict::Kind::tempfail)) {
                in_call = true;
                chain->abort();
                in_call = false;
                CHECK(!chain->in_message());
            }
        }
        if (!stopped && nested) start_next();
        if (destroy_in_done && (stopped || plan_pos == plan.size())) {
            TRACE("destroying the chain inside milter_done\n");
            chain.reset();
            destroyed = true;
        }
    }

    Stage expected_stage() const {
        switch (current) {
        case Step::connect: return Stage::connect;
        case Step::helo: return Stage::helo;
        case Step::mail: return Stage::mail;
        case Step::rcpt: return Stage::rcpt;
        case Step::unknown: return Stage::unknown;
        case Step::data: return Stage::data;
        case Step::content: return Stage::content;
        case Step::abort: break;
        }
        fail("milter_done after abort");
        return Stage::connect;
    }

    void check_verdict(const Verdict& v) {
        using K = Verdict::Kind;
        bool known_milter = false;
        for (const std::string& s : specs) known_milter = known_milter || v.milter == s;
        switch (v.kind) {
        case K::pass:
            CHECK(v.milter.empty() && v.code == 0 && v.text.empty() && !v.failure);
            break;
        case K::reject:
        case K::tempfail: {
            int cls = v.kind == K::reject ? 5 : 4;
            CHECK(v.code / 100 == cls && v.code <= 599);
            CHECK(enhanced_ok(v.enhanced, v.code));
            CHECK(!v.text.empty() && v.text.size() <= kMaxReplyLines);
            for (const std::string& line : v.text) CHECK(printable(line) && line.size() <= kMaxReplyLine);
            CHECK(known_milter);  // the message is always readable here: every refusal is a milter's
            break;
        }
        case K::discard:
        case K::shutdown:
            CHECK(known_milter && !v.failure);
            break;
        default:
            fail("unknown verdict kind");
        }
    }

    void check_message() {
        const Message& m = chain->message();
        const Changes& ch = chain->changes();
        if (ch.sender) CHECK(no_crlfnul(ch.sender->first) && no_crlfnul(ch.sender->second) && !ch.sender->first.empty());
        for (const auto& [a, args] : ch.add_rcpts) CHECK(!a.empty() && no_crlfnul(a) && no_crlfnul(args));
        for (const std::string& a : ch.del_rcpts) CHECK(!a.empty() && no_crlfnul(a));
        CHECK(no_crlfnul(ch.quarantine));
        if (ch.body_replaced) CHECK(m.changed());
        std::string head;
        for (const Header& h : m.headers) {
            check_header(h);
            head += h.raw;
        }
        std::string err;
        UniqueFd fd = m.write(err);
        CHECK(fd.valid());
        const std::string& all = read_all(fd.get());
        CHECK(all.size() >= head.size() && all.compare(0, head.size(), head) == 0);
        std::string_view rest = std::string_view(all).substr(head.size());
        if (m.body_length() > 0) CHECK(rest.substr(0, 2) == "\r\n");
        if (rest.substr(0, 2) == "\r\n") rest.remove_prefix(2);
        CHECK(rest.size() == m.body_length());
        if (ch.body_replaced) {
            for (std::size_t i = 0; i < rest.size(); i++) {
                if (rest[i] == '\r') CHECK(i + 1 < rest.size() && rest[i + 1] == '\n');
                if (rest[i] == '\n') CHECK(i > 0 && rest[i - 1] == '\r');
            }
            if (!rest.empty()) CHECK(rest.substr(rest.size() - 2) == "\r\n");
            // It is what one milter sent as its new body: all of its REPLBODY packets, or the first
            // ones when it broke the protocol after its end of message.
            bool found = false;
            for (auto& f : fakes)
                for (std::size_t k = 1; f && k <= f->replbody.size() && !found; k++)
                    found = crlf_body(f->replbody, k) == rest;
            if (!found) {
                TRACE("new body: \"%s\"\n", log::safe(rest).c_str());
                fail("the new body is none that a milter sent");
            }
        }
        if (!m.changed()) CHECK(all == messages().unchanged[message]);
    }

    // ---- driving

    // Starts the next step of the plan (aborts are no steps: they take effect at once).
    void start_next() {
        while (plan_pos < plan.size()) {
            Step s = plan[plan_pos++];
            current = s;
            in_call = true;
            if (s == Step::abort) {
                TRACE("abort\n");
                chain->abort();
                in_call = false;
                CHECK(!chain->in_message() && !chain->busy());
                continue;
            }
            TRACE("step %d\n", int(s));
            started++;
            awaiting = true;
            switch (s) {
            case Step::connect: chain->start(connect_info); break;
            case Step::helo: chain->helo("client.example.com"); break;
            case Step::mail: chain->mail({"<a@example.org>", "SIZE=1000", "BODY=8BITMIME"}); break;
            case Step::rcpt: chain->rcpt({"<b@example.net>", "NOTIFY=NEVER"}); break;
            case Step::unknown: chain->unknown("XFOO bar baz"); break;
            case Step::data: chain->data(); break;
            case Step::content: chain->content(messages().fd[message]); break;
            case Step::abort: break;
            }
            in_call = false;
            if (started == destroy_step) {  // the owner goes away in the middle of a step
                TRACE("destroying the chain while it works\n");
                chain.reset();
                destroyed = true;
            }
            return;
        }
        stopped = true;
    }

    ConnectInfo connect_info;

    // Nothing else is ready: the fake milters take their next turn.
    void on_idle() {
        loop_progress = false;
        if (!chain) return;
        if (!awaiting) {
            // Between two steps: a piece marked so goes out unasked.
            for (auto& f : fakes)
                if (f && !f->shut && !f->gone && !f->pieces.empty() && f->pieces.front().unasked)
                    return void(sent_unasked = loop_progress = f->send_next());
            return;
        }
        if (asked_any && last_asked < fakes.size() && fakes[last_asked] && fakes[last_asked]->send_next())
            return void(loop_progress = true);
        for (auto& f : fakes)
            if (f && f->send_next()) return void(loop_progress = true);
    }
    static void idle_cb(evutil_socket_t, short, void* arg) { static_cast<Harness*>(arg)->on_idle(); }

    // Fires the chain's earliest timer now, as if its time had passed; false when it has none.
    bool fast_forward() {
        struct Scan {
            event* best = nullptr;
            timeval when{};
        } scan;
        event_base_foreach_event(
            base,
            [](const event_base*, const event* ev, void* arg) {
                auto* sc = static_cast<Scan*>(arg);
                timeval tv{};
                // The chain's timers are the only events with a timeout; ours have none.
                if (event_get_fd(ev) != -1 || !event_pending(ev, EV_TIMEOUT, &tv)) return 0;
                if (!sc->best || timercmp(&tv, &sc->when, <)) sc->best = const_cast<event*>(ev), sc->when = tv;
                return 0;
            },
            &scan);
        if (!scan.best) return false;
        TRACE("fast-forward to the chain's next timeout\n");
        event_active(scan.best, EV_TIMEOUT, 1);
        return true;
    }

    // One turn of the loop: everything that is ready runs, then on_idle once.
    void turn() {
        event_active(idle_ev.get(), EV_TIMEOUT, 0);
        event_base_loop(base, EVLOOP_ONCE);
    }
};

void Deferred::cb(evutil_socket_t, short, void* arg) {
    auto* d = static_cast<Deferred*>(arg);
    Harness& h = *d->h;
    if (!h.chain) return;
    h.in_call = true;
    if (d->fails) h.chain->socket_failed(d->index, "connect: Connection refused (fuzz)");
    else h.chain->socket_ready(d->index, std::move(d->fd));
    h.in_call = false;
}

void Fake::on_command(char c) {
    static const std::string_view known = "ABCDEHKLMNOQRTU";
    CHECK(known.find(c) != std::string_view::npos);
    if (first_cmd) CHECK(c == SMFIC_OPTNEG);
    first_cmd = false;
    // Nothing the agreement excludes is sent.
    if (agreed_known) CHECK(sends(agreed, c));
    if (c == SMFIC_OPTNEG && auto_optneg) return;
    Agreement none;
    if (!answers(agreed_known ? agreed : none, c)) return;
    h->last_asked = index;
    h->asked_any = true;
    send_next();
}

void Fake::on_readable() {
    if (silent && pieces.empty()) return stall();
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            event_del(read_ev.get());
            event_del(write_ev.get());
            gone = true;  // a broken milter's unsent output may end mid-packet
            return;
        }
        std::size_t i = 0, len = std::size_t(n);
        while (i < len) {
            if (skip > 0) {
                std::size_t k = std::min(skip, len - i);
                skip -= k, i += k;
                if (skip == 0) on_command(cmd);
                continue;
            }
            head[head_len++] = static_cast<unsigned char>(buf[i++]);
            if (head_len < 5) continue;
            head_len = 0;
            uint32_t l = (uint32_t(head[0]) << 24) | (uint32_t(head[1]) << 16) | (uint32_t(head[2]) << 8) | head[3];
            CHECK(l >= 1 && l <= 2 * 1024 * 1024);
            cmd = char(head[4]);
            skip = l - 1;
            if (skip == 0) on_command(cmd);
        }
    }
}

std::string optneg_for(uint8_t flags, uint32_t actions, uint32_t protocol) {
    static const uint32_t versions[4] = {6, 2, 3, 6};
    uint32_t version = versions[(flags >> 2) & 3];
    if ((flags & 0x30) != 0x30) {
        actions &= SMFIF_ALL;
        protocol &= kOfferProtocol;
    }
    std::string data = u32(version) + u32(actions) + u32(protocol);
    if (flags & 0x40) {
        data += u32(SMFIM_CONNECT) + std::string("j {client_addr} {nosuch}") + '\0';
        data += u32(SMFIM_EOM) + std::string("i {empty}") + '\0';
    }
    return packet(SMFIC_OPTNEG, data);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    signal(SIGPIPE, SIG_IGN);
    g_verbose = std::getenv("MILTER_FUZZ_VERBOSE") != nullptr;
    // The chain logs every broken milter: quiet, unless asked for.
    log::init("fuzz_milter_chain", true);
    log::set_level(g_verbose ? log::Level::debug : static_cast<log::Level>(int(log::Level::error) + 1));
    messages();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{data, size};
    uint8_t g0 = in.byte(), g1 = in.byte();
    int milters = (g0 & 1) ? 2 : 1;
    int action = (g0 >> 1) & 3;
    bool small_limit = g1 & 2;
    std::shared_ptr<const Config> cfg = config(milters, action, small_limit);
    int fds_before = open_fds();
    {
        EventBasePtr base(event_base_new());
        if (!base || event_base_priority_init(base.get(), 3) != 0) std::abort();
        Harness h;
        h.base = base.get();
        h.nested = g0 & 8;
        h.message = (g0 >> 6) & 3;
        if (h.message == kLarge && ((g1 >> 2) & 3) != 3) h.message = kMessages - 1;
        h.destroy_in_done = g1 & 1;
        static const char families[4] = {SMFIA_INET, SMFIA_INET6, SMFIA_UNIX, SMFIA_UNKNOWN};
        h.connect_info.family = families[(g1 >> 2) & 3];
        h.connect_info.hostname = "unknown";
        switch (h.connect_info.family) {
        case SMFIA_INET: h.connect_info.port = 4242, h.connect_info.address = "192.0.2.1"; break;
        case SMFIA_INET6: h.connect_info.port = 4243, h.connect_info.address = "2001:db8::1"; break;
        case SMFIA_UNIX: h.connect_info.address = "/run/mta/sock"; break;
        default: break;
        }
        h.destroy_step = (g1 >> 4) >= 12 ? unsigned(g1 >> 4) - 11 : 0;

        h.plan = {Step::connect, Step::helo, Step::mail, Step::rcpt};
        if (g0 & 0x20) h.plan.push_back(Step::unknown);
        h.plan.push_back(Step::data);
        if (g0 & 0x10) {
            h.plan.insert(h.plan.end(), {Step::abort, Step::mail, Step::rcpt, Step::data});
        }
        h.plan.push_back(Step::content);

        for (int i = 0; i < milters; i++) {
            uint8_t f = in.byte();
            uint32_t actions = in.be(2), protocol = in.be(3);
            MilterCfg m;
            m.socket_fails = f & 1;
            m.auto_optneg = !(f & 2);
            m.silent = f & 0x80;
            m.optneg = optneg_for(f, actions, protocol);
            h.mcfg.push_back(std::move(m));
            h.specs.push_back(cfg->smtpd_milters[std::size_t(i)].spec);
        }
        std::vector<std::deque<Piece>> scripts(static_cast<std::size_t>(milters));
        while (in.n > 0) {
            uint8_t ctl = in.byte();
            std::size_t len = in.byte();
            Piece p;
            p.bytes = in.take(len);
            p.unasked = ctl & 2;
            p.close = ctl & 4;
            scripts[std::size_t((ctl & 1) % milters)].push_back(std::move(p));
        }

        h.fakes.resize(std::size_t(milters));
        h.idle_ev.reset(event_new(h.base, -1, 0, Harness::idle_cb, &h));
        event_priority_set(h.idle_ev.get(), 2);
        h.chain = std::make_unique<Chain>(h.base, cfg, cfg->smtpd_milters, h);
        h.start_next();  // connect: milter_socket is called from inside it, nothing else
        for (int i = 0; i < milters; i++)
            if (h.fakes[std::size_t(i)]) h.fakes[std::size_t(i)]->pieces = std::move(scripts[std::size_t(i)]);

        int loops = 0;
        for (; loops < kMaxLoops; loops++) {
            if (!h.chain) break;
            if (!h.awaiting) {
                if (h.stopped) break;
                if (!h.sent_unasked) h.start_next();  // (nested: milter_done has started it already)
                h.sent_unasked = false;
                if (h.stopped && !h.awaiting) break;
            }
            h.turn();
            if (!h.chain || !h.awaiting || h.loop_progress) continue;
            // An open step and nothing left to do. With every milter done or gone, the chain missed
            // something; with a silent milter only a timeout can end the step: its time has come.
            bool silent = false;
            for (auto& f : h.fakes) silent = silent || (f && f->stalled && !f->gone);
            if (!silent) fail("hang: a step waits for milters that are done or gone");
            if (!h.fast_forward()) fail("hang: a step waits for a silent milter, and no timeout is armed");
        }
        if (loops == kMaxLoops) fail("too many loop turns");
        if (!h.destroyed) {
            CHECK(h.done == h.started);
            CHECK(!h.chain->busy());
            h.chain.reset();
        }
        // Whatever the chain left behind must not fire any more (ASan sees a use after free).
        for (int i = 0; i < 3; i++) h.turn();
        CHECK(h.done <= h.started);
    }
    int fds_after = open_fds();
    CHECK(fds_after == fds_before);
    return 0;
}
