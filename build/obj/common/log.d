build/obj/common/log.o: common/log.cpp common/log.h
common/log.h:
