build/obj/common/config.o: common/config.cpp common/config.h \
 common/address.h common/log.h
common/config.h:
common/address.h:
common/log.h:
