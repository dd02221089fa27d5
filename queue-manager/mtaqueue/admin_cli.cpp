// mtaqueue/mailq client side: argument checks, one control request, exit status from the answer.
#include "queue-manager/mtaqueue/admin_cli.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <unistd.h>

#include "common/tool_config.h"
#include "common/control_client.h"
#include "common/version.h"

namespace mta::queue {

int admin_tool_main(const char* prog, const char* prefix, int argc, char** argv) {
    std::string usage = std::string("usage: ") + prog +
                        (*prefix ? " [-c config_file] [--json] [filters]\n"
                                 : " [-c config_file] list|show|why|hold|release|delete|flush|requeue [ID...] "
                                   "[--from A] [--to A] [--domain D] [--older-than DUR] [--state S] [--json] [--all]\n"
                                   "       mtaqueue stats [--json]\n"
                                   "       mtaqueue suppression list|add|remove [ADDRESS...] [--ttl DUR] [--json]\n"
                                   "       mtaqueue warmup [list] [--json] | warmup set IP-ADDRESS --first-used YYYY-MM-DD\n"
                                   "       mtaqueue tlsrpt [list] [--json] | tlsrpt send\n");
    ConfigOption conf;
    // Stop at the first operand so that "--json", "--from" etc. reach the queue untouched.
    if (int rc = parse_config_option(prog, argc, argv, usage.c_str(), conf, true); rc >= 0) return rc;
    std::string line = prefix;
    for (int i = optind; i < argc; i++) {
        for (const char* p = argv[i]; *p; p++) {
            unsigned char c = static_cast<unsigned char>(*p);
            if (c <= 0x20 || c == 0x7f) {
                fprintf(stderr, "%s: arguments may not contain spaces or control characters\n", prog);
                return 2;
            }
        }
        if (!line.empty()) line += " ";
        line += argv[i];
    }
    if (line.empty()) {
        fprintf(stderr, "%s: no command; try %s list\n", prog, prog);
        return 2;
    }
    Config cfg;
    if (!load_tool_config(prog, conf.path, conf.explicit_path, cfg)) return 1;
    // The answer goes out as it comes (a listing of a big queue streams). An answer that is an error is
    // one whole text starting with "error:"; one that broke off (the queue died) ends with such a line.
    std::string head, tail, err;
    bool decided = false, error = false;
    auto out = [&](std::string_view piece) {
        fwrite(piece.data(), 1, piece.size(), error ? stderr : stdout);
        fflush(error ? stderr : stdout);
        tail.append(piece);
        if (tail.size() > 4096) tail.erase(0, tail.size() - 1024);
    };
    auto decide = [&] {  // on the answer's first line, or all of it when shorter
        decided = true;
        error = head.rfind("error:", 0) == 0;
        out(head);
    };
    auto sink = [&](std::string_view piece) {
        if (decided) return out(piece);
        head.append(piece);
        if (head.size() >= 6 || head.find('\n') != std::string::npos) decide();
    };
    if (!control_stream(cfg.control_socket, "queue " + line, sink, err)) {
        fprintf(stderr, "%s: %s\n", prog, err.c_str());
        return 1;
    }
    if (!decided && !head.empty()) decide();
    std::string_view t = tail;
    if (!t.empty() && t.back() == '\n') t.remove_suffix(1);
    std::string_view last = t.substr(t.rfind('\n') == std::string_view::npos ? 0 : t.rfind('\n') + 1);
    if (!error && last.rfind("error: ", 0) == 0) {
        fprintf(stderr, "%.*s\n", int(last.size()), last.data());
        error = true;
    }
    return error ? 1 : 0;
}

}  // namespace mta::queue
