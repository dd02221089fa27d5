// Precompiled for the fuzz targets (see common/pch.h): the same headers, built with the test code's flags.

#include "common/pch.h"
