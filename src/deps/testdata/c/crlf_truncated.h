#include "a.h"
#include \
  "continued.h"
/* comment */ #include "after_comment.h"
#include "unterminated.h
#include <trunc