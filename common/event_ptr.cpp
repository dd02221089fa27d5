// Deleters for the libevent handles in event_ptr.h.
#include "common/event_ptr.h"

#include <event2/bufferevent.h>
#include <event2/event.h>

namespace mta {

void EventFree::operator()(event* e) const noexcept { event_free(e); }
void BufferEventFree::operator()(bufferevent* b) const noexcept { bufferevent_free(b); }
void EventBaseFree::operator()(event_base* b) const noexcept { event_base_free(b); }

int tls_bufferevent_options() { return BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS; }

}  // namespace mta
