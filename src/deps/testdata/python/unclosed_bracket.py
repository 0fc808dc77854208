x = foo(1, 2
import recovered
from also import this
