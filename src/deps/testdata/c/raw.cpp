#include <vector>
const char* r = R"xyz(
#include "in_raw_string.h"
)xyz";
const char* u = u8R"(#include "in_u8raw.h")";
#include "after_raw.hpp"
