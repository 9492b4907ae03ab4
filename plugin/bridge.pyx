# cython: language_level=3, boundscheck=False, wraparound=False
"""C entry points of ``fix glassgnn`` into Python (compiled as ``glassmd._glassgnn_bridge``).

The fix (C++) imports this module through the generated ``*_api.h`` header and calls the
``cdef public api`` functions below with the GIL held.  Each function wraps the LAMMPS buffers it
receives as numpy arrays without copying, forwards to :mod:`glassmd.runtime`, and returns 0 on
success or -1 on failure; the text of the failure is then available from
:c:func:`glassgnn_last_error`.  Nothing raises across the C boundary: an exception escaping a
``noexcept`` function would be printed and lost, and the fix could not report it through
``error->all``.
"""

from cpython.buffer cimport PyBUF_READ, PyBUF_WRITE
from cpython.memoryview cimport PyMemoryView_FromMemory

import numpy as np

# Live evaluators by handle; the fix holds only the integer.
_evaluators = {}
_next_handle = 1
# Strings handed to C++ stay alive here until the next call that replaces them.
cdef bytes _last_error = b""
_strings = {}


cdef int _record_failure(object exc) noexcept:
    global _last_error
    try:
        from glassmd.runtime import describe_exception

        text = describe_exception(exc)
    except BaseException:  # the runtime itself may be what failed to import
        text = f"{type(exc).__name__}: {exc}"
    _last_error = text.encode("utf-8", "replace")
    return -1


cdef object _array(const void *ptr, Py_ssize_t rows, Py_ssize_t cols, object dtype, bint writable):
    """numpy view of ``rows x cols`` C-contiguous items at ``ptr`` (``cols == 0``: 1-d)."""
    cdef Py_ssize_t count = rows * (cols if cols > 0 else 1)
    if cols > 0:
        shape = (rows, cols)
    else:
        shape = (rows,)
    if count == 0 or ptr == NULL:
        return np.zeros(shape, dtype=dtype)
    itemsize = np.dtype(dtype).itemsize
    view = PyMemoryView_FromMemory(<char *> ptr, count * itemsize, PyBUF_WRITE if writable else PyBUF_READ)
    return np.frombuffer(view, dtype=dtype).reshape(shape)


cdef const char *_keep(object key, object text) except NULL:
    cdef bytes data = str(text).encode("utf-8", "replace")
    _strings[key] = data
    return data


cdef public api const char *glassgnn_last_error() noexcept:
    return _last_error


cdef public api int glassgnn_load(const char *path, const char *device, int threads, int local_rank,
                                  int *handle) noexcept:
    global _next_handle
    try:
        from glassmd.runtime import LayerwiseEvaluator

        evaluator = LayerwiseEvaluator(
            path.decode("utf-8", "surrogateescape"),
            device=device.decode(),
            threads=threads,
            local_rank=local_rank,
        )
        _evaluators[_next_handle] = evaluator
        handle[0] = _next_handle
        _next_handle += 1
        return 0
    except BaseException as exc:
        return _record_failure(exc)


cdef public api int glassgnn_release(int handle) noexcept:
    try:
        _evaluators.pop(handle, None)
        for key in [k for k in _strings if k[0] == handle]:
            del _strings[key]
        return 0
    except BaseException as exc:
        return _record_failure(exc)


cdef public api int glassgnn_query(int handle, double *cutoff, int *num_layers, int *feature_dim,
                                   int *num_types, int *num_outputs) noexcept:
    try:
        evaluator = _evaluators[handle]
        cutoff[0] = evaluator.cutoff
        num_layers[0] = evaluator.num_layers
        feature_dim[0] = evaluator.feature_dim
        num_types[0] = len(evaluator.type_names)
        num_outputs[0] = len(evaluator.output_names)
        return 0
    except BaseException as exc:
        return _record_failure(exc)


cdef public api const char *glassgnn_type_name(int handle, int index) noexcept:
    try:
        return _keep((handle, "type", index), _evaluators[handle].type_names[index])
    except BaseException as exc:
        _record_failure(exc)
        return NULL


cdef public api const char *glassgnn_output_name(int handle, int index) noexcept:
    try:
        return _keep((handle, "output", index), _evaluators[handle].output_names[index])
    except BaseException as exc:
        _record_failure(exc)
        return NULL


cdef public api const char *glassgnn_describe(int handle) noexcept:
    try:
        return _keep((handle, "describe"), _evaluators[handle].describe())
    except BaseException as exc:
        _record_failure(exc)
        return NULL


cdef public api int glassgnn_begin(int handle, int num_nodes, const int *types, int num_edges,
                                   const int *senders, const int *receivers,
                                   const double *edge_vec) noexcept:
    try:
        _evaluators[handle].begin(
            _array(types, num_nodes, 0, np.intc, False),
            _array(senders, num_edges, 0, np.intc, False),
            _array(receivers, num_edges, 0, np.intc, False),
            _array(edge_vec, num_edges, 3, np.float64, False),
        )
        return 0
    except BaseException as exc:
        return _record_failure(exc)


cdef public api int glassgnn_layer(int handle, int k, const double *features_in, int num_nodes,
                                   double *features_out, int num_out) noexcept:
    try:
        evaluator = _evaluators[handle]
        width = evaluator.feature_dim
        evaluator.layer(
            k,
            None if k == 0 else _array(features_in, num_nodes, width, np.float64, False),
            _array(features_out, num_out, width, np.float64, True),
        )
        return 0
    except BaseException as exc:
        return _record_failure(exc)


cdef public api int glassgnn_predict(int handle, int num_rows, double *values) noexcept:
    try:
        evaluator = _evaluators[handle]
        evaluator.predict(_array(values, num_rows, len(evaluator.output_names), np.float64, True))
        return 0
    except BaseException as exc:
        return _record_failure(exc)


cdef public api int glassgnn_readout(int handle, const double *features, int num_rows,
                                     double *values) noexcept:
    try:
        evaluator = _evaluators[handle]
        evaluator.readout(
            _array(features, num_rows, evaluator.feature_dim, np.float64, False),
            _array(values, num_rows, len(evaluator.output_names), np.float64, True),
        )
        return 0
    except BaseException as exc:
        return _record_failure(exc)
