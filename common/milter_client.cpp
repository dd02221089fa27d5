// The milter client (common/milter_client.h): connections, one command at a time per step, milter by
// milter in the configured order; timeouts and milter_default_action; the content step and the
// modifications it collects. Every byte from a milter goes through ReplyDecoder and parse_reply first.
#include "common/milter_client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <strings.h>

#include "common/file_util.h"
#include "common/log.h"
#include "common/wire/limits.h"

namespace mta::milter {
namespace {

constexpr std::size_t kMaxHeaderBlock = 1024 * 1024;  // headers read into memory; the rest is body
constexpr std::size_t kOutputHigh = 256 * 1024;       // body chunks wait while this much is unsent

// What we offer every milter: every action, every NO*/NR* step, SKIP and HDR_LEADSPC. Not RCPT_REJ:
// recipients we refuse never reach a milter.
constexpr uint32_t kOfferProtocol = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY |
                                    SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA |
                                    SMFIP_SKIP | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                                    SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC;

bool valid_header_name(std::string_view n) {
    if (n.empty() || n.size() > kMaxHeaderName) return false;
    for (char c : n)
        if (c <= 32 || c >= 127 || c == ':') return false;
    return true;
}

uint64_t file_size(int fd) {
    struct stat st {};
    return fstat(fd, &st) == 0 ? uint64_t(st.st_size) : 0;
}

UniqueFd new_memfd(const char* name) { return UniqueFd(memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)); }

std::string field(const std::string& name, const std::string& value, bool leadspc) {
    return name + (leadspc ? ":" : ": ") + value + "\r\n";
}

// An RFC 3463 status code of class `cls`: "c.sss.ddd", one to three digits after each dot.
bool enhanced_code(std::string_view e, char cls) {
    if (e.size() < 5 || e[0] != cls || e[1] != '.') return false;
    std::size_t dot = e.find('.', 2);
    if (dot == std::string_view::npos) return false;
    std::string_view subject = e.substr(2, dot - 2), detail = e.substr(dot + 1);
    auto digits = [](std::string_view d) {
        return !d.empty() && d.size() <= 3 && d.find_first_not_of("0123456789") == std::string_view::npos;
    };
    return digits(subject) && digits(detail);
}

// The SMTP reply of a REPLYCODE: its lines are complete ("550-5.7.1 text"); the enhanced code of the
// first line is kept when it fits the reply code, the text of every line after it.
Verdict replycode_verdict(const Reply& r) {
    Verdict v;
    v.kind = r.smtp_code >= 500 ? Verdict::Kind::reject : Verdict::Kind::tempfail;
    v.code = r.smtp_code;
    for (const std::string& line : r.lines) {
        std::string_view rest = line.size() > 4 ? std::string_view(line).substr(4) : std::string_view();
        std::size_t sp = rest.find(' ');
        std::string_view first = rest.substr(0, sp);
        if (enhanced_code(first, line[0])) {
            if (v.enhanced.empty()) v.enhanced = std::string(first);
            rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
        }
        v.text.emplace_back(rest);
    }
    if (v.enhanced.empty()) v.enhanced = v.code >= 500 ? "5.7.1" : "4.7.1";
    if (v.text.empty() || (v.text.size() == 1 && v.text[0].empty())) v.text = {"Command rejected"};
    return v;
}

Verdict simple(Verdict::Kind kind) {
    Verdict v;
    v.kind = kind;
    if (kind == Verdict::Kind::reject) {
        v.code = 550, v.enhanced = "5.7.1", v.text = {"Command rejected"};
    } else if (kind == Verdict::Kind::tempfail) {
        v.code = 451, v.enhanced = "4.7.1", v.text = {"Service unavailable - try again later"};
    }
    return v;
}

}  // namespace

const char* stage_name(Stage s) {
    switch (s) {
    case Stage::connect: return "connect";
    case Stage::helo: return "helo";
    case Stage::mail: return "mail";
    case Stage::rcpt: return "rcpt";
    case Stage::data: return "data";
    case Stage::unknown: return "unknown";
    case Stage::content: return "content";
    }
    return "?";
}

std::optional<addr::Mailbox> parse_address(const std::string& text, bool sender) {
    std::string p = text;
    if (p.empty() || p.front() != '<') p = "<" + p + ">";
    addr::PathOptions opts;
    opts.allow_null = sender;
    opts.smtputf8 = true;
    addr::PathResult r = addr::parse_path(p, opts);
    if (!r.ok || !r.rest.empty()) return std::nullopt;
    return r.mailbox;
}

bool Changes::any() const { return sender || !add_rcpts.empty() || !del_rcpts.empty() || header_edits || body_replaced; }

std::string Changes::summary() const {
    return "headers=" + std::to_string(header_edits) + " body=" + (body_replaced ? "replaced" : "kept") +
           " sender=" + (sender ? "changed" : "kept") + " rcpts_added=" + std::to_string(add_rcpts.size()) +
           " rcpts_deleted=" + std::to_string(del_rcpts.size());
}

// ---- Message

bool Message::load(int fd, std::string& err) {
    *this = Message();
    uint64_t size = file_size(fd);
    std::string buf(std::size_t(std::min<uint64_t>(size, kMaxHeaderBlock)), '\0');
    std::size_t got = 0;
    while (got < buf.size()) {
        ssize_t n = pread(fd, buf.data() + got, buf.size() - got, off_t(got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            err = n < 0 ? strerror(errno) : "short read";
            return false;
        }
        got += std::size_t(n);
    }
    std::size_t pos = 0;
    while (pos < buf.size()) {
        std::size_t e = buf.find("\r\n", pos);
        if (e == std::string::npos) break;  // an unterminated last line, or past the header limit: body
        std::string_view line(buf.data() + pos, e - pos);
        if (line.empty()) {
            separator_ = true;
            pos = e + 2;
            break;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            if (headers.empty()) break;
            headers.back().raw.append(line).append("\r\n");
        } else {
            std::size_t colon = line.find(':');
            if (colon == std::string_view::npos || !valid_header_name(line.substr(0, colon))) break;
            headers.push_back({std::string(line.substr(0, colon)), std::string(line) + "\r\n"});
        }
        pos = e + 2;
    }
    body_fd_ = fd;
    body_off_ = pos;
    body_len_ = size - pos;
    return true;
}

void Message::add_header(const std::string& name, const std::string& value, bool leadspc) {
    headers.push_back({name, field(name, value, leadspc)});
    changed_ = true;
}

void Message::insert_header(uint32_t index, const std::string& name, const std::string& value, bool leadspc) {
    std::size_t at = std::min<std::size_t>(index, headers.size());
    headers.insert(headers.begin() + std::ptrdiff_t(at), Header{name, field(name, value, leadspc)});
    changed_ = true;
}

void Message::change_header(uint32_t index, const std::string& name, const std::string& value, bool leadspc) {
    uint32_t want = index == 0 ? 1 : index, seen = 0;
    for (auto it = headers.begin(); it != headers.end(); ++it) {
        if (strcasecmp(it->name.c_str(), name.c_str()) != 0 || ++seen != want) continue;
        if (value.empty()) headers.erase(it);
        else it->raw = field(it->name, value, leadspc);
        changed_ = true;
        return;
    }
    if (!value.empty()) add_header(name, value, leadspc);  // Sendmail: changing a missing header adds it
}

bool Message::append_body(std::string_view piece, uint64_t limit) {
    if (!new_body_) new_body_.emplace();
    if (new_body_->size() + piece.size() > limit) return false;
    new_body_->append(piece);
    return true;
}

// CRLF line ends (a milter may send bare LF or CR), the last line terminated.
bool Message::finish_body(std::string& err) {
    if (!new_body_) return true;
    std::string out;
    out.reserve(new_body_->size() + new_body_->size() / 32 + 2);
    const std::string& in = *new_body_;
    for (std::size_t i = 0; i < in.size(); i++) {
        char c = in[i];
        if (c == '\r') {
            out += "\r\n";
            if (i + 1 < in.size() && in[i + 1] == '\n') i++;
        } else if (c == '\n') {
            out += "\r\n";
        } else {
            out += c;
        }
    }
    if (!out.empty() && out.back() != '\n') out += "\r\n";
    new_body_.reset();
    UniqueFd fd = new_memfd("mta-milter-body");
    if (!fd || !write_all(fd.get(), out)) {
        err = std::string("replacing the body: ") + strerror(errno);
        return false;
    }
    replaced_ = std::move(fd);
    body_fd_ = replaced_.get();
    body_off_ = 0;
    body_len_ = out.size();
    changed_ = true;
    return true;
}

UniqueFd Message::write(std::string& err) const {
    UniqueFd fd = new_memfd("mta-message");
    std::string head;
    for (const Header& h : headers) head += h.raw;
    if (separator_ || body_len_ > 0) head += "\r\n";
    if (!fd || !write_all(fd.get(), head) || !copy_range(body_fd_, fd.get(), body_off_, body_off_ + body_len_)) {
        err = strerror(errno);
        return UniqueFd();
    }
    return fd;
}

// ---- one milter connection

struct Chain::Client {
    enum class St { waiting_socket, connecting, negotiating, ready, waiting, dead };
    enum class Phase { headers, eoh, body, eom, done };

    Chain* chain = nullptr;
    std::size_t index = 0;
    std::string spec;
    St st = St::waiting_socket;
    UniqueFd fd;               // until the connect completes
    EventPtr connect_ev;
    BufferEventPtr bev;
    EventPtr timer;
    ReplyDecoder decoder;
    Agreement agreed;
    char awaiting = 0;         // the command whose reply is due
    bool skip_session = false; // accepted the connection: nothing more of this session
    bool skip_message = false; // accepted (or refused to see) the current message
    bool write_wait = false;   // body chunks wait for the output to drain
    // content
    Phase phase = Phase::headers;
    std::size_t header = 0;
    uint64_t body_pos = 0;
    bool skip_body = false;
    bool got_body = false;     // SMFIR_REPLBODY seen in this end of message

    bool leadspc() const { return agreed.protocol & SMFIP_HDR_LEADSPC; }
    bool connecting() const { return st == St::waiting_socket || st == St::connecting || st == St::negotiating; }

    void arm(uint64_t seconds) {
        timeval tv{static_cast<time_t>(seconds), 0};
        evtimer_add(timer.get(), &tv);
    }
    // The reply to `command` is due within `seconds`.
    void await(char command, uint64_t seconds) {
        st = St::waiting;
        awaiting = command;
        arm(seconds);
    }
    void send(const std::string& bytes) {
        if (bev && !bytes.empty()) bufferevent_write(bev.get(), bytes.data(), bytes.size());
    }
    void close() {
        st = St::dead;
        connect_ev.reset();
        bev.reset();
        fd.reset();
        if (timer) evtimer_del(timer.get());
    }

    static void timer_cb(int, short, void* arg) {
        auto* c = static_cast<Client*>(arg);
        c->chain->broken(*c, c->write_wait         ? "timeout sending the body"
                             : c->st == St::waiting ? "timeout waiting for a reply"
                                                    : "timeout connecting");
    }
    static void connect_cb(int, short, void* arg) {
        auto* c = static_cast<Client*>(arg);
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        c->connect_ev.reset();
        if (err != 0) return c->chain->broken(*c, std::string("connect: ") + strerror(err));
        c->chain->connected(*c);
    }
    static void read_cb(bufferevent* b, void* arg) {
        auto* c = static_cast<Client*>(arg);
        evbuffer* in = bufferevent_get_input(b);
        std::string data(evbuffer_get_length(in), '\0');
        evbuffer_remove(in, data.data(), data.size());
        std::string_view rest = data;
        while (c->st != St::dead) {
            Reply r;
            ReplyDecoder::Status s = c->decoder.next(rest, r);
            if (s == ReplyDecoder::Status::need_more) return;
            if (s == ReplyDecoder::Status::error) return c->chain->broken(*c, c->decoder.error());
            c->chain->on_reply(*c, r);
        }
    }
    static void write_cb(bufferevent*, void* arg) {
        auto* c = static_cast<Client*>(arg);
        if (!c->write_wait) return;
        c->write_wait = false;
        evtimer_del(c->timer.get());
        Chain& ch = *c->chain;
        if (!ch.content_next(*c)) {
            ch.cursor_++;
            ch.next();
        }
    }
    static void event_cb(bufferevent*, short what, void* arg) {
        auto* c = static_cast<Client*>(arg);
        // A milter that accepted the whole session may hang up between commands.
        if ((what & BEV_EVENT_EOF) && c->skip_session && c->awaiting == 0 && c->decoder.idle()) return c->close();
        c->chain->broken(*c, (what & BEV_EVENT_EOF) ? (c->decoder.idle() ? "connection closed" : "connection closed mid-reply")
                                                     : std::string("socket error: ") + strerror(errno));
    }
};

Chain::Chain(event_base* base, std::shared_ptr<const Config> cfg, const std::vector<MilterEndpoint>& list, Owner& owner)
    : base_(base), cfg_(std::move(cfg)), list_(list), owner_(owner), done_ev_(event_new(base, -1, 0, done_cb, this)) {}

Chain::~Chain() { quit(); }

void Chain::quit() {
    std::string quit = cmd::quit();
    for (auto& c : clients_) {
        if (c->st == Client::St::ready || c->st == Client::St::waiting) {
            // Straight to the socket: the bufferevent goes away now.
            int fd = bufferevent_getfd(c->bev.get());
            if (evbuffer_get_length(bufferevent_get_output(c->bev.get())) == 0 && fd >= 0)
                (void)!::send(fd, quit.data(), quit.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        c->close();
    }
}

void Chain::done_cb(int, short, void* arg) {
    auto* ch = static_cast<Chain*>(arg);
    Verdict v = ch->result_;  // the owner may destroy the chain
    ch->owner_.milter_done(ch->stage_, v);
}

void Chain::finish(Verdict v) {
    if (!step_active_) return;
    step_active_ = false;
    if (stage_ == Stage::content) in_message_ = false;
    result_ = std::move(v);
    event_active(done_ev_.get(), EV_TIMEOUT, 0);
}

uint64_t Chain::timeout_for(char command) const {
    switch (command) {
    case SMFIC_OPTNEG: return cfg_->milter_connect_timeout;
    case SMFIC_BODY: case SMFIC_BODYEOB: return cfg_->milter_content_timeout;
    default: return cfg_->milter_command_timeout;
    }
}

std::string Chain::macros_for(const Client& c, int list, char command) const {
    const std::vector<std::string>* names = &cfg_->milter_macros[list];
    if (list < int(kMacroStages))
        for (const SymList& s : c.agreed.symlists)
            if (s.stage == uint32_t(list)) names = &s.macros;
    cmd::Macros m;
    for (const std::string& n : *names)
        if (auto v = owner_.milter_macro(n)) m.emplace_back(n, *v);
    return m.empty() ? std::string() : cmd::macro(command, m);
}

// ---- connecting

void Chain::start(ConnectInfo info) {
    info_ = std::move(info);
    stage_ = Stage::connect;
    step_active_ = true;
    cursor_ = 0;
    for (std::size_t i = 0; i < list_.size(); i++) {
        auto c = std::make_unique<Client>();
        c->chain = this;
        c->index = i;
        c->spec = list_[i].spec;
        c->timer.reset(evtimer_new(base_, Client::timer_cb, c.get()));
        c->arm(cfg_->milter_connect_timeout);
        clients_.push_back(std::move(c));
    }
    for (std::size_t i = 0; i < clients_.size(); i++) owner_.milter_socket(i);
    if (clients_.empty()) finish(Verdict());
}

void Chain::socket_ready(std::size_t index, UniqueFd fd) {
    if (index >= clients_.size() || clients_[index]->st != Client::St::waiting_socket) return;
    Client& c = *clients_[index];
    c.fd = std::move(fd);
    c.st = Client::St::connecting;
    c.connect_ev.reset(event_new(base_, c.fd.get(), EV_WRITE, Client::connect_cb, &c));
    event_add(c.connect_ev.get(), nullptr);
}

void Chain::socket_failed(std::size_t index, const std::string& why) {
    if (index >= clients_.size() || clients_[index]->st != Client::St::waiting_socket) return;
    broken(*clients_[index], why);
}

void Chain::connected(Client& c) {
    c.bev.reset(bufferevent_socket_new(base_, c.fd.release(), BEV_OPT_CLOSE_ON_FREE));
    if (!c.bev) return broken(c, "out of memory");
    bufferevent_setcb(c.bev.get(), Client::read_cb, Client::write_cb, Client::event_cb, &c);
    bufferevent_enable(c.bev.get(), EV_READ | EV_WRITE);
    c.st = Client::St::negotiating;
    c.awaiting = SMFIC_OPTNEG;
    c.send(cmd::optneg(kVersion, SMFIF_ALL, kOfferProtocol));
}

// ---- steps

void Chain::begin(Stage stage) {
    stage_ = stage;
    step_active_ = true;
    cursor_ = 0;
    if (failed_) return finish(*failed_);
    if (stage == Stage::mail) {
        in_message_ = true;
        discarded_ = false;
        for (auto& c : clients_) c->skip_message = false;
    }
    next();
}

void Chain::helo(const std::string& name) {
    line_ = name;
    begin(Stage::helo);
}

void Chain::mail(const std::vector<std::string>& args) {
    args_ = args;
    begin(Stage::mail);
}

void Chain::rcpt(const std::vector<std::string>& args) {
    args_ = args;
    begin(Stage::rcpt);
}

void Chain::data() { begin(Stage::data); }

void Chain::unknown(const std::string& line) {
    line_ = line;
    begin(Stage::unknown);
}

void Chain::content(int fd) {
    changes_ = Changes();
    content_fd_ = fd;
    std::string err;
    stage_ = Stage::content;
    step_active_ = true;
    cursor_ = 0;
    if (failed_) return finish(*failed_);
    if (!msg_.load(fd, err)) {
        LOG_ERROR("event=milter_error stage=content reason=\"reading the message: %s\"%s", err.c_str(),
                  owner_.milter_log_context().c_str());
        return finish(simple(Verdict::Kind::tempfail));
    }
    for (auto& c : clients_) {
        c->phase = Client::Phase::headers;
        c->header = 0;
        c->body_pos = 0;
        c->skip_body = false;
        c->got_body = false;
    }
    next();
}

void Chain::abort() {
    if (!in_message_) return;
    in_message_ = false;
    for (auto& c : clients_)
        if (c->st == Client::St::ready && !c->skip_session) c->send(cmd::abort());
}

void Chain::next() {
    bool message = stage_ == Stage::mail || stage_ == Stage::rcpt || stage_ == Stage::data || stage_ == Stage::content;
    while (cursor_ < clients_.size()) {
        Client& c = *clients_[cursor_];
        if (c.st != Client::St::ready || c.skip_session || (message && (c.skip_message || discarded_))) {
            cursor_++;
            continue;
        }
        if (stage_ == Stage::content) {
            if (content_next(c)) return;
            cursor_++;
            continue;
        }
        char command = 0;
        int list = 0;
        std::string packet;
        switch (stage_) {
        case Stage::connect:
            command = SMFIC_CONNECT, list = SMFIM_CONNECT;
            packet = cmd::connect(info_.hostname, info_.family, info_.port, info_.address);
            break;
        case Stage::helo: command = SMFIC_HELO, list = SMFIM_HELO, packet = cmd::helo(line_); break;
        case Stage::mail: command = SMFIC_MAIL, list = SMFIM_ENVFROM, packet = cmd::mail(args_); break;
        case Stage::rcpt: command = SMFIC_RCPT, list = SMFIM_ENVRCPT, packet = cmd::rcpt(args_); break;
        case Stage::data: command = SMFIC_DATA, list = SMFIM_DATA, packet = cmd::data(); break;
        case Stage::unknown: command = SMFIC_UNKNOWN, list = 7, packet = cmd::unknown(line_); break;
        case Stage::content: break;
        }
        if (!sends(c.agreed, command)) {
            cursor_++;
            continue;
        }
        c.send(macros_for(c, list, command));
        c.send(packet);
        if (answers(c.agreed, command)) return c.await(command, timeout_for(command));
        cursor_++;
    }
    finish(Verdict());
}

// Sends this milter the next part of the message; true when a reply (or the output's drain) is due,
// false when the milter has had all of it.
bool Chain::content_next(Client& c) {
    const Agreement& a = c.agreed;
    for (;;) {
        switch (c.phase) {
        case Client::Phase::headers: {
            if (!sends(a, SMFIC_HEADER) || c.header >= msg_.headers.size()) {
                c.phase = Client::Phase::eoh;
                break;
            }
            const Header& h = msg_.headers[c.header++];
            std::string_view v(h.raw);
            v.remove_prefix(h.name.size() + 1);
            if (v.size() >= 2) v.remove_suffix(2);  // the final CRLF
            if (!c.leadspc())
                while (!v.empty() && (v[0] == ' ' || v[0] == '\t')) v.remove_prefix(1);
            c.send(cmd::header(h.name, v));
            if (answers(a, SMFIC_HEADER)) {
                c.await(SMFIC_HEADER, timeout_for(SMFIC_HEADER));
                return true;
            }
            break;
        }
        case Client::Phase::eoh:
            c.phase = Client::Phase::body;
            if (!sends(a, SMFIC_EOH)) break;
            c.send(macros_for(c, SMFIM_EOH, SMFIC_EOH));
            c.send(cmd::eoh());
            if (answers(a, SMFIC_EOH)) {
                c.await(SMFIC_EOH, timeout_for(SMFIC_EOH));
                return true;
            }
            break;
        case Client::Phase::body: {
            if (!sends(a, SMFIC_BODY) || c.skip_body || c.body_pos >= msg_.body_length()) {
                c.phase = Client::Phase::eom;
                break;
            }
            if (evbuffer_get_length(bufferevent_get_output(c.bev.get())) > kOutputHigh) {
                c.write_wait = true;  // a milter that stops reading is as slow as one that stops answering
                c.arm(timeout_for(SMFIC_BODY));
                return true;
            }
            std::string chunk(std::size_t(std::min<uint64_t>(kBodyChunk, msg_.body_length() - c.body_pos)), '\0');
            ssize_t n = pread(msg_.body_fd(), chunk.data(), chunk.size(), off_t(msg_.body_offset() + c.body_pos));
            if (n <= 0) {
                LOG_ERROR("event=milter_error milter=%s stage=content reason=\"reading the body: %s\"%s", c.spec.c_str(),
                          n < 0 ? strerror(errno) : "short read", owner_.milter_log_context().c_str());
                c.phase = Client::Phase::eom;
                break;
            }
            chunk.resize(std::size_t(n));
            c.body_pos += uint64_t(n);
            c.send(cmd::body(chunk));
            if (answers(a, SMFIC_BODY)) {
                c.await(SMFIC_BODY, timeout_for(SMFIC_BODY));
                return true;
            }
            break;
        }
        case Client::Phase::eom:
            c.phase = Client::Phase::done;
            c.send(macros_for(c, SMFIM_EOM, SMFIC_BODYEOB));
            c.send(cmd::bodyeob());
            c.await(SMFIC_BODYEOB, timeout_for(SMFIC_BODYEOB));
            return true;
        case Client::Phase::done:
            return false;
        }
    }
}

// ---- replies

// Every milter is connected and negotiated, or given up: the connect step may begin.
bool Chain::all_connected() const {
    return std::none_of(clients_.begin(), clients_.end(), [](const auto& c) { return c->connecting(); });
}

void Chain::on_reply(Client& c, const Reply& r) {
    if (c.st == Client::St::negotiating) {
        std::string err;
        if (!negotiate(Offer{kVersion, SMFIF_ALL, kOfferProtocol}, r, c.agreed, err)) return broken(c, err);
        c.st = Client::St::ready;
        c.awaiting = 0;
        evtimer_del(c.timer.get());
        if (stage_ == Stage::connect && step_active_ && all_connected()) next();
        return;
    }
    const char* name = reply_name(r.code);
    if (c.st != Client::St::waiting) return broken(c, std::string("unexpected ") + (name ? name : "reply"));
    if (r.code == SMFIR_PROGRESS) {
        c.arm(timeout_for(c.awaiting));
        return;
    }
    if (r.code == SMFIR_SETSYMLIST) return broken(c, "SMFIR_SETSYMLIST after the negotiation");
    bool eom = c.awaiting == SMFIC_BODYEOB;
    if (uint32_t need = action_needed(r.code)) {
        if (!eom) return broken(c, std::string(name) + " before the end of the message");
        if (!(c.agreed.actions & need)) return broken(c, std::string(name) + " without negotiating it");
        if (!apply_modification(c, r)) return broken(c, std::string(name) + " too large");
        c.arm(timeout_for(c.awaiting));
        return;
    }
    if (r.code == SMFIR_SKIP && c.awaiting != SMFIC_BODY) return broken(c, "SMFIR_SKIP outside the body");
    c.st = Client::St::ready;
    c.awaiting = 0;
    evtimer_del(c.timer.get());
    Verdict v;
    switch (r.code) {
    case SMFIR_CONTINUE:
        break;
    case SMFIR_SKIP:
        c.skip_body = true;
        break;
    case SMFIR_ACCEPT:
    case SMFIR_DISCARD:
        if (stage_ == Stage::connect || stage_ == Stage::helo) {
            c.skip_session = true;
        } else if (r.code == SMFIR_DISCARD && stage_ != Stage::unknown) {
            discarded_ = true;
            v.kind = Verdict::Kind::discard;
            v.milter = c.spec;
            return finish(v);
        } else if (stage_ != Stage::unknown) {
            c.skip_message = true;
            if (eom) break;  // its changes stand
            cursor_++;
            return next();
        }
        break;
    case SMFIR_REJECT:
    case SMFIR_TEMPFAIL:
        v = simple(r.code == SMFIR_REJECT ? Verdict::Kind::reject : Verdict::Kind::tempfail);
        v.milter = c.spec;
        return finish(v);
    case SMFIR_REPLYCODE:
        v = replycode_verdict(r);
        v.milter = c.spec;
        return finish(v);
    case SMFIR_SHUTDOWN:
    case SMFIR_CONN_FAIL:
        v.kind = Verdict::Kind::shutdown;
        v.milter = c.spec;
        return finish(v);
    default:
        return broken(c, std::string("unexpected ") + (name ? name : "reply"));
    }
    if (stage_ == Stage::content) {
        if (eom) {
            std::string err;
            if (c.got_body && !msg_.finish_body(err)) {
                LOG_ERROR("event=milter_error milter=%s stage=content reason=\"%s\"%s", c.spec.c_str(), err.c_str(),
                          owner_.milter_log_context().c_str());
                return finish(simple(Verdict::Kind::tempfail));
            }
            if (c.got_body) changes_.body_replaced = true;
            cursor_++;
            return next();
        }
        if (content_next(c)) return;
        cursor_++;
        return next();
    }
    cursor_++;
    next();
}

bool Chain::apply_modification(Client& c, const Reply& r) {
    switch (r.code) {
    case SMFIR_ADDHEADER:
        msg_.add_header(r.name, r.value, c.leadspc());
        changes_.header_edits++;
        return true;
    case SMFIR_INSHEADER:
        msg_.insert_header(r.index, r.name, r.value, c.leadspc());
        changes_.header_edits++;
        return true;
    case SMFIR_CHGHEADER:
        msg_.change_header(r.index, r.name, r.value, c.leadspc());
        changes_.header_edits++;
        return true;
    case SMFIR_CHGFROM:
        changes_.sender = {r.address, r.args};
        return true;
    case SMFIR_ADDRCPT:
    case SMFIR_ADDRCPT_PAR:
        if (changes_.add_rcpts.size() >= 1000) return false;
        changes_.add_rcpts.emplace_back(r.address, r.args);
        return true;
    case SMFIR_DELRCPT:
        if (changes_.del_rcpts.size() >= 1000) return false;
        changes_.del_rcpts.push_back(r.address);
        return true;
    case SMFIR_REPLBODY:
        c.got_body = true;
        return msg_.append_body(r.body, cfg_->message_size_limit);
    case SMFIR_QUARANTINE:
        changes_.quarantine = wire::make_clean("milter " + c.spec + ": " + r.reason, wire::kMaxHoldReason);
        return true;
    }
    return false;
}

// A milter broke the protocol, timed out or went away: it is closed, and milter_default_action says
// what the session makes of that.
void Chain::broken(Client& c, const std::string& why) {
    if (c.st == Client::St::dead) return;
    bool current = step_active_ && cursor_ < clients_.size() && clients_[cursor_].get() == &c;
    bool connecting = c.connecting();
    const std::string& action = cfg_->milter_default_action;
    LOG_WARN("event=milter_error milter=%s stage=%s reason=\"%s\" action=%s%s", log::safe(c.spec).c_str(),
             stage_name(stage_), log::safe(why).c_str(), action.c_str(), owner_.milter_log_context().c_str());
    c.close();
    if (stage_ == Stage::content) msg_.drop_new_body();  // its partial REPLBODY is no one's body
    if (action != "accept") {
        Verdict v = simple(action == "reject" ? Verdict::Kind::reject : Verdict::Kind::tempfail);
        v.milter = c.spec;
        v.failure = true;
        for (auto& o : clients_) o->close();  // the session is refused from here on
        failed_ = v;
        finish(v);
        return;
    }
    if (!step_active_) return;
    if (connecting && stage_ == Stage::connect) {
        if (all_connected()) next();
        return;
    }
    if (current) {
        cursor_++;
        next();
    }
}

}  // namespace mta::milter
