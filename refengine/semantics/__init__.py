"""The rules of each endpoint, one module per endpoint (spec/SEMANTICS.md).

Each module turns a validated request into a plan (every check and default) and
holds a deliberately plain reference fold over a list of rows, one function per
spec rule, each citing its heading. :mod:`refengine.fast` answers the same plans
faster; the reference fold decides what the right answer is.
"""
