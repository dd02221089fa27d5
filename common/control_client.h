// Client side of mtad's control socket, shared by the admin tools: one command line, one text answer.
#pragma once
#include <string>

namespace mta {

// Sends `command` and returns the answer; false with `err` when mtad is unreachable.
bool control_request(const std::string& socket_path, const std::string& command, std::string& answer, std::string& err);

}  // namespace mta
