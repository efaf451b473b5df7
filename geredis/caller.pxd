# C attributes for caller.py's classes when Cython compiles it (setup.py,
# geredis/speedups.py). Every attribute stays readable and writable from
# Python, and a cpdef method callable from it; the .py file is the code
# either way.

cdef class Handoff:
    cdef public object hub
    cdef public list woken
    cdef public Py_ssize_t next

cdef class Caller:
    cdef public object greenlet
    cdef public Handoff handoff
    cdef public object hub
    cdef public object value
    cdef public object error
    cdef public bint ready
    cpdef object get(self)  # a C call from compiled code
