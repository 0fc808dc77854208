import first
from pkg import name
# import nope
import last
