import ok
x = "ÿþ invalid utf8"
import after_invalid
from broken import (
  a,
