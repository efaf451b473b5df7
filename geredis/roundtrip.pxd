# C types for roundtrip.py's locals when Cython compiles it (setup.py,
# geredis/speedups.py); the .py file is the code either way.

cimport cython
from .caller cimport Caller
from .connection cimport Connection

@cython.locals(conn=Connection, waiter=Caller, spare=list)
cpdef object round_trip(object client, object command, object packed, object options,
                        object cache, object args)

cdef bint _execute_command_replaced(object client) except -1
