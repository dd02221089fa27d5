// Owning handles for libevent objects: each event, bufferevent and event_base is freed exactly once,
// by whoever holds it. The one definition every role uses; headers need no libevent include.
#pragma once
#include <memory>

struct event;
struct event_base;
struct bufferevent;

namespace mta {

struct EventFree { void operator()(event* e) const noexcept; };
struct BufferEventFree { void operator()(bufferevent* b) const noexcept; };
struct EventBaseFree { void operator()(event_base* b) const noexcept; };

using EventPtr = std::unique_ptr<event, EventFree>;
using BufferEventPtr = std::unique_ptr<bufferevent, BufferEventFree>;
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;

// Options for every OpenSSL bufferevent (socket or filter): close on free, and callbacks deferred to the
// event loop. Without the deferral an OpenSSL bufferevent runs our callbacks from inside our own calls
// (a failed write inside bufferevent_write, a read when draining the input re-enables reading), so a
// session could be finished, or re-entered, in the middle of a verb.
int tls_bufferevent_options();

}  // namespace mta
