build/obj/tests/unit/main.o: tests/unit/main.cpp
