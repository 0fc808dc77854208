#include "local.h"
#include <stdio.h>
  #  include   "spaced.h"
#include_next <next.h>
#import "objc.h"
// #include "line_comment.h"
/* #include "block_comment.h"
#include "still_comment.h" */
#if 0
#include "in_if0.h"
#endif
const char *s = "#include \"string.h\"";
char c = '"';
// continued comment \
#include "continued_comment.h"
#define X "#include \"define.h\""
#include "sub/dir.h"
