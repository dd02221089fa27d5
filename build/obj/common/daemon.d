build/obj/common/daemon.o: common/daemon.cpp common/daemon.h \
 common/config.h common/fd.h common/ipc.h common/protocol.h common/log.h
common/daemon.h:
common/config.h:
common/fd.h:
common/ipc.h:
common/protocol.h:
common/log.h:
