# C attributes for connection.py's Connection when Cython compiles it
# (setup.py, geredis/speedups.py). Every attribute stays readable and
# writable from Python, and __dict__ takes any other; the .py file is the
# code either way.

from .caller cimport Caller, Handoff

cdef class Connection:
    cdef dict __dict__
    cdef object __weakref__
    cdef public object settings, cache, stats, state, on_push, error
    cdef public object _pending, _deadlines, _expiry, _timeout, _out, _writer
    cdef public list spare_waiters, _held
    cdef public Handoff handoff
    cdef public Py_ssize_t _special
    cdef public object max_in_flight, room, _integrity, _marker
    cdef public bint opened
    cdef public object _sock, _reader, _packer, _loop, _closed, _receiver, _health, _greenlet
    # A C call from compiled code (an instance attribute of that name would
    # still win, as for any method).
    cpdef submit(self, packed, slot, raw=*)
