build/obj/common/ipc.o: common/ipc.cpp common/ipc.h common/fd.h \
 common/protocol.h common/log.h
common/ipc.h:
common/fd.h:
common/protocol.h:
common/log.h:
