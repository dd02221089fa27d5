// mta-metrics: serves the MTA's metrics over HTTP (GET /metrics, Prometheus text exposition format) on the
// sockets mtad bound for metrics_listen. It runs as metrics_user, chrooted in the empty directory, and
// knows nothing itself: each scrape asks mtad, which collects every role's samples and renders the
// text (master_stats.cpp). Root never parses HTTP; this process holds nothing worth taking.
#include <cstdlib>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/daemon.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/role.h"
#include "common/wire/wire.h"

namespace {

using namespace mta;

constexpr std::size_t kMaxScrapes = 8;             // answers awaited from mtad at once
constexpr std::size_t kMaxBody = 16 * 1024 * 1024; // a rendered text larger than this is mtad gone wrong
constexpr int kHttpTimeout = 10;                   // seconds for a client to send its request

struct HttpDeleter {
    void operator()(evhttp* h) const { evhttp_free(h); }
};

class MetricsServer : public daemon::MasterHandler {
public:
    explicit MetricsServer(event_base* base) : base_(base), http_(evhttp_new(base)) {
        instance_ = this;
        if (!http_) {
            LOG_ERROR("event=startup_failed reason=\"evhttp_new failed\"");
            exit(1);
        }
        evhttp_set_max_headers_size(http_.get(), 8192);
        evhttp_set_max_body_size(http_.get(), 1024);
        evhttp_set_timeout(http_.get(), kHttpTimeout);
        // Every method reaches on_http, which answers all but GET and HEAD with 405 and an Allow header.
        evhttp_set_allowed_methods(http_.get(), EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                                    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                                    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
        evhttp_set_gencb(http_.get(), &MetricsServer::on_http, this);
    }

    void attach_master(UniqueFd fd) { master_ = std::make_unique<daemon::MasterLink>(base_, Role::metrics, std::move(fd), *this); }

    void on_peer(Role role, uint64_t, UniqueFd) override {
        daemon::malformed(Role::master, std::string("metrics has no peers, got ") + role_name(role));
    }
    void on_reload(Config, const wire::Config&) override {}
    void on_stop() override {
        LOG_INFO("event=stopping");
        event_base_loopexit(base_, nullptr);
    }
    void on_listen(const std::string& kind, UniqueFd fd) override {
        if (kind != "metrics") daemon::malformed(Role::master, "listen of kind " + kind);
        // Our own listener, so that running out of descriptors (a flood of idle connections, each
        // dropped after kHttpTimeout) pauses accepting for a second instead of spinning on accept().
        evconnlistener* l = evconnlistener_new(base_, nullptr, nullptr, LEV_OPT_CLOSE_ON_FREE, -1, fd.get());
        if (!l || !evhttp_bind_listener(http_.get(), l)) {
            LOG_ERROR("event=listen_failed kind=metrics");
            exit(1);
        }
        fd.release();  // the listener owns it now
        evconnlistener_set_error_cb(l, &MetricsServer::on_accept_error);
        listeners_.push_back(l);
        if (!resume_) resume_.reset(evtimer_new(base_, &MetricsServer::on_resume, this));
    }
    // The rendered metrics from mtad, in chunks, for the scrape with that request id.
    void on_request(ipc::Message& m) override {
        if (m.type != ipc::Type::admin_reply) return MasterHandler::on_request(m);
        wire::AdminReply r;
        std::string err;
        if (!wire::decode(m, r, err)) daemon::malformed(Role::master, "admin_reply: " + err);
        auto it = pending_.find(m.reqid);
        if (it == pending_.end()) return;  // the client went away
        Scrape& s = it->second;
        if (s.body.size() + r.text.size() > kMaxBody) daemon::malformed(Role::master, "metrics text too large");
        s.body += r.text;
        if (r.more) return;
        evhttp_request* req = s.req;
        std::string body = std::move(s.body);
        forget(it);
        if (body.empty()) {
            evhttp_send_error(req, 503, "metrics unavailable");
            return;
        }
        evkeyvalq* out = evhttp_request_get_output_headers(req);
        evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        evhttp_add_header(out, "Cache-Control", "no-store");
        evbuffer* buf = evbuffer_new();
        if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) evbuffer_add(buf, body.data(), body.size());
        evhttp_send_reply(req, 200, "OK", buf);
        evbuffer_free(buf);
        metrics::registry().add("mta_metrics_scrapes_total", metrics::labels({{"result", "ok"}}));
    }

private:
    struct Scrape {
        evhttp_request* req = nullptr;
        evhttp_connection* conn = nullptr;
        std::string body;
    };

    static void on_http(evhttp_request* req, void* arg) {
        auto* self = static_cast<MetricsServer*>(arg);
        const char* uri = evhttp_request_get_uri(req);
        std::string path = uri ? uri : "";
        path = path.substr(0, path.find('?'));
        evhttp_cmd_type cmd = evhttp_request_get_command(req);
        if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            evhttp_send_error(req, 405, "only GET and HEAD");
            metrics::registry().add("mta_metrics_scrapes_total", metrics::labels({{"result", "bad_method"}}));
            return;
        }
        if (path != "/metrics") {
            evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
            metrics::registry().add("mta_metrics_scrapes_total", metrics::labels({{"result", "not_found"}}));
            return;
        }
        if (self->pending_.size() >= kMaxScrapes || !self->master_ || !self->master_->open()) {
            evhttp_send_error(req, 503, "too many scrapes at once");
            metrics::registry().add("mta_metrics_scrapes_total", metrics::labels({{"result", "busy"}}));
            return;
        }
        uint64_t id = ++self->seq_;
        evhttp_connection* conn = evhttp_request_get_connection(req);
        self->pending_[id] = Scrape{req, conn, ""};
        // A client that hangs up before the answer frees the request with its connection: forget it.
        evhttp_connection_set_closecb(conn, &MetricsServer::on_conn_closed, self);
        self->master_->send(wire::encode(wire::StatsRequest{}, id));
    }

    static void on_accept_error(evconnlistener*, void*) {  // its argument is evhttp's, not ours
        MetricsServer* self = instance_;
        int e = EVUTIL_SOCKET_ERROR();
        LOG_WARN("event=accept_failed kind=metrics reason=\"%s\" action=pause", evutil_socket_error_to_string(e));
        if (!self) return;
        for (auto* each : self->listeners_) evconnlistener_disable(each);
        timeval tv{1, 0};
        evtimer_add(self->resume_.get(), &tv);
    }

    static void on_resume(int, short, void* arg) {
        for (auto* l : static_cast<MetricsServer*>(arg)->listeners_) evconnlistener_enable(l);
    }

    static void on_conn_closed(evhttp_connection* conn, void* arg) {
        auto* self = static_cast<MetricsServer*>(arg);
        for (auto it = self->pending_.begin(); it != self->pending_.end();)
            it = it->second.conn == conn ? self->pending_.erase(it) : std::next(it);
    }

    void forget(std::map<uint64_t, Scrape>::iterator it) {
        evhttp_connection* conn = it->second.conn;
        pending_.erase(it);
        for (auto& [id, s] : pending_)
            if (s.conn == conn) return;
        evhttp_connection_set_closecb(conn, nullptr, nullptr);
    }

    event_base* base_;
    std::unique_ptr<evhttp, HttpDeleter> http_;
    std::unique_ptr<daemon::MasterLink> master_;
    std::map<uint64_t, Scrape> pending_;
    uint64_t seq_ = 0;
    std::vector<evconnlistener*> listeners_;  // owned by http_ (evhttp_bind_listener)
    EventPtr resume_;
    static MetricsServer* instance_;  // the error callback gets no argument of ours
};

MetricsServer* MetricsServer::instance_ = nullptr;

}  // namespace

int main(int argc, char** argv) {
    auto boot = daemon::start(Role::metrics, argc, argv);
    daemon::drop_privileges_or_exit(boot.cfg.metrics_user, boot.cfg.spool_dir + "/empty");
    EventBasePtr base = daemon::new_event_base();
    daemon::ignore_sigpipe();
    MetricsServer server(base.get());
    server.attach_master(std::move(boot.master));
    LOG_INFO("event=started user=%s", boot.cfg.metrics_user.c_str());
    event_base_dispatch(base.get());
    return 0;
}
