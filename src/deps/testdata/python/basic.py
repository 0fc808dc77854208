"""Docstring mentioning
import not_an_import
from fake import nothing
"""
import os
import a.b.c as abc, d
from . import sibling
from ..parent.mod import (
    one,
    two as deux,  # import trap_in_comment
    three,
)
from .pkg import *
# import commented_out
x = "import in_string"
y = '''
from triple import single
'''
if True: import inline_after_colon
z = 1; import after_semicolon
def f():
    import nested.inside
    return r"import raw_string"
m = importlib.import_module("dyn.mod")
n = __import__('dyn2')
s = f"{'import nope'}"
obj.import_thing = 3
from x import y \
    , w
