// HTTPS policy fetch for MTA-STS (RFC 8461 §3.3) on worker threads. Everything the remote web server
// sends is bounded (deadline, byte cap) and then judged by parse_sts_http_response().
#include "resolver/mta_sts_fetch.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "resolver/mta_sts_http.h"

namespace mta::resolver {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return ms > 0 ? int(ms) : 0;
}

// Non-blocking connect bounded by the deadline; the socket is left blocking with I/O timeouts.
int connect_with_deadline(const std::string& ip, uint16_t port, Clock::time_point deadline, std::string& err) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, ip.c_str(), &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, ip.c_str(), &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        len = sizeof *s6;
    } else {
        err = "bad address " + ip;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err = std::string("socket: ") + strerror(errno);
        return -1;
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
        err = "connect to " + ip + ": " + strerror(errno);
        close(fd);
        return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (poll(&p, 1, remaining_ms(deadline)) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
        err = "connect to " + ip + ": " + (soerr ? strerror(soerr) : "timed out");
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int ms = remaining_ms(deadline);
    timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

std::string ssl_error(const char* what) {
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return std::string(what) + (e ? std::string(": ") + buf : "");
}

}  // namespace

SSL_CTX* make_sts_https_context(const std::string& ca_file, std::string& err) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        err = "cannot create TLS context";
        return nullptr;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    // HTTP/1.0 bodies end at the connection close, and many servers skip close_notify; a cut short
    // body is still caught by Content-Length (when sent) and the strict policy parser.
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
        err = ssl_error(("cannot load CA file " + ca_file).c_str());
        SSL_CTX_free(ctx);
        return nullptr;
    }
    if (SSL* probe = SSL_new(ctx)) SSL_free(probe);  // load what OpenSSL loads lazily, before the chroot
    return ctx;
}

FetchResult https_fetch_policy(SSL_CTX* ctx, const std::string& host, const std::string& ip, uint16_t port,
                               int timeout_seconds) {
    FetchResult r;
    auto deadline = Clock::now() + std::chrono::seconds(timeout_seconds);
    int fd = connect_with_deadline(ip, port, deadline, r.error);
    if (fd < 0) return r;
    SSL* ssl = SSL_new(ctx);
    if (!ssl) {
        close(fd);
        r.error = "TLS setup failed";
        return r;
    }
    SSL_set_tlsext_host_name(ssl, host.c_str());
    SSL_set1_host(ssl, host.c_str());  // RFC 8461 §3.3: the certificate must be valid for mta-sts.<domain>
    SSL_set_fd(ssl, fd);
    std::string raw;
    if (SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        r.error = v != X509_V_OK ? std::string("certificate verification failed: ") + X509_verify_cert_error_string(v)
                                 : ssl_error("TLS handshake failed");
    } else {
        std::string req = sts_http_request(host);
        if (SSL_write(ssl, req.data(), int(req.size())) != int(req.size())) {
            r.error = ssl_error("sending the request failed");
        } else {
            char buf[8192];
            while (raw.size() <= kMaxHttpResponseBytes) {
                if (remaining_ms(deadline) == 0) {
                    r.error = "timed out reading the policy";
                    break;
                }
                int n = SSL_read(ssl, buf, sizeof buf);
                if (n > 0) {
                    raw.append(buf, std::size_t(n));
                    continue;
                }
                int e = SSL_get_error(ssl, n);
                // A clean close_notify or a bare TCP close both end an HTTP/1.0 response; the
                // Content-Length check in the parser catches truncation where the server sent one.
                if (e != SSL_ERROR_ZERO_RETURN && !(e == SSL_ERROR_SYSCALL && errno == 0))
                    r.error = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out reading the policy"
                                                                      : ssl_error("reading the policy failed");
                break;
            }
            ERR_clear_error();
            if (raw.size() > kMaxHttpResponseBytes) r.error = "response larger than 64 KiB";
        }
    }
    SSL_free(ssl);
    close(fd);
    if (!r.error.empty()) return r;
    auto body = parse_sts_http_response(raw, r.error);
    if (!body) return r;
    r.ok = true;
    r.body = std::move(*body);
    return r;
}

FetchPool::Shared::~Shared() {
    if (wake_fd >= 0) close(wake_fd);
}

FetchPool::FetchPool(event_base* base, SSL_CTX* ctx) : base_(base), ctx_(ctx) {}

FetchPool::~FetchPool() {
    ev_.reset();  // before the fd it watches is closed
    if (read_fd_ >= 0) close(read_fd_);
}

bool FetchPool::start(std::string& err) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        err = std::string("pipe: ") + strerror(errno);
        return false;
    }
    read_fd_ = p[0];
    shared_->wake_fd = p[1];
    ev_.reset(event_new(base_, read_fd_, EV_READ | EV_PERSIST, &FetchPool::on_wake, this));
    if (!ev_ || event_add(ev_.get(), nullptr) != 0) {
        err = "cannot watch the fetch pipe";
        return false;
    }
    return true;
}

bool FetchPool::fetch(const std::string& host, const std::string& ip, uint16_t port, Done done) {
    if (running_.size() >= kMaxStsFetches || !ctx_) return false;
    uint64_t id = next_id_++;
    running_[id] = std::move(done);
    std::shared_ptr<Shared> shared = shared_;
    SSL_CTX* ctx = ctx_;
    std::thread([shared, ctx, host, ip, port, id] {
        FetchResult r = https_fetch_policy(ctx, host, ip, port, kStsFetchTimeoutSeconds);
        std::lock_guard<std::mutex> lock(shared->mu);
        shared->results.emplace_back(id, std::move(r));
        char b = 1;
        ssize_t w = write(shared->wake_fd, &b, 1);  // a full pipe already means "wake up"
        (void)w;
    }).detach();
    return true;
}

void FetchPool::on_wake(int fd, short, void* arg) {
    auto* self = static_cast<FetchPool*>(arg);
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {}
    std::deque<std::pair<uint64_t, FetchResult>> results;
    {
        std::lock_guard<std::mutex> lock(self->shared_->mu);
        results.swap(self->shared_->results);
    }
    for (auto& [id, r] : results) {
        auto it = self->running_.find(id);
        if (it == self->running_.end()) continue;
        Done cb = std::move(it->second);
        self->running_.erase(it);
        cb(std::move(r));
    }
}

}  // namespace mta::resolver
