"""Device code shared by the persistent recurrent kernels: the on-chip product both
directions run, the prefetch of the next step's inputs, W's load, the cooperative variant's
step product, and the launch helper (argument checks, shared-memory opt-in, the checks that
the compiled kernel fits the device).

The variants and how one is chosen: `persistent_plan`. The kernels: `persistent_forward`,
`persistent_backward`.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32, float64, int64, uint64
from numba.cuda import libdevice
from numba.cuda.cudadrv.driver import CudaAPIError

try:    # numba-cuda 0.2x+ launches through cuda.core, whose refusals are its own CUDAError
    from cuda.core._utils.cuda_utils import CUDAError
except ImportError:     # older cuda-core keeps it under .experimental; without cuda-core, numba's alone
    try:
        from cuda.core.experimental._utils.cuda_utils import CUDAError
    except ImportError:
        CUDAError = CudaAPIError

# Device functions are inlined at the Numba IR level (kernels/device.py): a local array handed
# to a call that is not inlined lives in local memory, inlined it stays in registers.
from .device import array_types, inline
from .persistent_plan import (COOP_COLUMNS, COOP_THREADS, DEFAULT_DYNAMIC_SMEM, SIMULATOR, PersistentUnavailable,
                              Plan, device_limits, launch_blocker)


def _split_host(pair):
    """The two float32 of an 8-byte word (lower address first): NumPy for the simulator,
    whose libdevice functions are stubs."""
    two = np.array([pair], np.float64).view(np.float32)
    return two[0], two[1]


@inline
def _split_device(pair):
    """The two float32 of an 8-byte word (lower address first): register moves, no arithmetic."""
    return (libdevice.int_as_float(libdevice.double2loint(pair)),
            libdevice.int_as_float(libdevice.double2hiint(pair)))


split = cuda.jit(device=True)(_split_host) if SIMULATOR else _split_device

def make_matvec(rows, rreg, pairs):
    """acc[q] += Σ_i x[xoff + q·xstride + i] · w_i for q < rows, i in [i0, i1), where w_i is
    wreg[i] for i < rreg (registers, fully unrolled) and w[wbase + i·wstride] otherwise
    (shared memory). A thread's W reads are consecutive across its warp (no bank conflict);
    its x reads are one address per warp (a broadcast). With `pairs`, x is read through x2,
    the same shared memory as 8-byte words, two elements per load (xoff, xstride, i0, i1,
    rreg even)."""

    # uint64 indices: Numba adds negative-index wrap-around code to every signed index;
    # while loops over incremented indices: Numba's range() with a run-time start costs
    # three times the instructions per iteration in PTX.
    @inline
    def single(x, x2, xoff, xstride, w, wbase, wstride, wreg, i0, i1, acc):
        for i in range(rreg):
            wv = wreg[i]
            for q in range(rows):
                acc[q] += x[uint64(xoff + q * xstride + i)] * wv
        start = max(i0, rreg)
        xi, xend = uint64(xoff + start), uint64(xoff + i1)
        wi, wstep, xstep = uint64(wbase + start * wstride), uint64(wstride), uint64(xstride)
        while xi < xend:
            wv = w[wi]
            for q in range(rows):
                acc[q] += x[xi + uint64(q) * xstep] * wv
            xi += uint64(1)
            wi += wstep

    @inline
    def paired(x, x2, xoff, xstride, w, wbase, wstride, wreg, i0, i1, acc):
        for i in range(0, rreg, 2):
            w0, w1 = wreg[i], wreg[i + 1]
            for q in range(rows):
                lo, hi = split(x2[uint64((xoff + q * xstride + i) // 2)])
                acc[q] += lo * w0
                acc[q] += hi * w1
        start = max(i0, rreg)
        xi, xend = uint64((xoff + start) // 2), uint64((xoff + i1) // 2)
        wi, wstep, xstep = uint64(wbase + start * wstride), uint64(wstride), uint64(xstride // 2)
        while xi < xend:
            w0, w1 = w[wi], w[wi + wstep]
            for q in range(rows):
                lo, hi = split(x2[xi + uint64(q) * xstep])
                acc[q] += lo * w0
                acc[q] += hi * w1
            xi += uint64(1)
            wi += wstep + wstep

    return paired if pairs else single


@inline
def prefetch(G, g_last, S, lengths, k, b, j, raw, q):
    """raw[3q], raw[3q+1], raw[3q+2] = G[k, b, j], [k = lengths[b] − 1]·g_last[b, j], S[k+1, b, j]
    for an active step (0 ≤ k < lengths[b], b < B, j < d; zeros otherwise). The loads are
    issued a step early and used after the next product, so their latency is hidden; the
    explicit gradient is e_k = raw[3q] + raw[3q+1] (G or g_last absent when it has 0 rows)."""
    zero = S.dtype.type(0)
    active = k >= 0 and b < S.shape[1] and j < S.shape[2] and k < lengths[b]
    raw[3 * q] = G[k, b, j] if active and G.shape[0] > 0 else zero
    raw[3 * q + 1] = g_last[b, j] if active and g_last.shape[0] > 0 and k == lengths[b] - 1 else zero
    raw[3 * q + 2] = S[k + 1, b, j] if active else zero


@inline
def load_w(W, transpose, sm, woff, wstride, col0, ncols, irow0):
    """sm[woff + (i − irow0)·wstride + c] = M[i, col0 + c] for irow0 ≤ i < d, c < ncols
    (0 past column d), with M = W or W^T, all threads of the block cooperating."""
    d = W.shape[0]
    n = (d - irow0) * ncols
    for idx in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        i = irow0 + idx // ncols
        col = col0 + idx % ncols
        v = W.dtype.type(0)
        if col < d:
            v = W[col, i] if transpose else W[i, col]
        sm[woff + (i - irow0) * wstride + idx % ncols] = v


@inline
def load_block(W, transpose, sm, rreg, wreg, lengths, b0, rows, lens):
    """The block variant's start: rows [rreg, d) of M = W or W^T into shared memory (all
    threads), M[0:rreg, j] into thread j's registers wreg, lens[q] = lengths[b0 + q] (0 past B)."""
    d = W.shape[0]
    j = cuda.threadIdx.x
    load_w(W, transpose, sm, 0, d, 0, d, rreg)
    if j < d:
        for i in range(rreg):
            wreg[i] = W[j, i] if transpose else W[i, j]
    for q in range(rows):
        lens[q] = lengths[b0 + q] if b0 + q < lengths.shape[0] else 0


def numba_float(dtype):
    """The Numba type of a float32 / float64 NumPy dtype."""
    return float64 if np.dtype(dtype) == np.float64 else float32


def arrays(dtype):
    """Numba array types (1-D, 2-D, 3-D C-contiguous) of `dtype`, and the lengths type."""
    return (*array_types(numba_float(dtype)), int64[::1])


def _c_contiguous(array):
    """True for a C-contiguous NumPy array or `__cuda_array_interface__` object."""
    cai = getattr(array, "__cuda_array_interface__", None)
    if cai is None:
        return array.flags.c_contiguous
    if cai.get("strides") is None:
        return True
    expected, step = [], np.dtype(cai["typestr"]).itemsize
    for extent in reversed(cai["shape"]):
        expected.append(step)
        step *= extent
    return all(n == 1 or s == e for n, s, e in zip(cai["shape"], cai["strides"], reversed(expected)))


def check_arrays(names, args, sig):
    """Each array argument has the dtype and rank of the launch signature and is C-contiguous
    (else the launch would compile another specialisation, without the shared-memory opt-in)."""
    for name, value, ty in zip(names, args, sig):
        if not hasattr(ty, "ndim"):
            continue
        want = np.dtype(str(ty.dtype))
        if np.dtype(value.dtype) != want:
            raise TypeError(f"{name} must be {want}, got {np.dtype(value.dtype)}")
        if len(value.shape) != ty.ndim or not _c_contiguous(value):
            raise ValueError(f"{name} must be a C-contiguous {ty.ndim}-d array, got shape {tuple(value.shape)}")


def cell_arguments(cells, names):
    """(names, arguments) of a launch over `cells` (1 or 2 tuples of one cell's arrays, in
    `names` order): each name's first and second cell's array side by side, a single cell's
    arrays passed twice (its blocks run only the first)."""
    if len(cells) not in (1, 2):
        raise ValueError(f"one launch runs 1 or 2 cells, got {len(cells)}")
    second = cells[-1]
    args, labels = [], []
    for i, name in enumerate(names):
        args += [cells[0][i], second[i]]
        labels += [name, f"{name} (second cell)"]
    return labels, args


def check_same_shapes(cells, names):
    """Every cell's arrays have the first cell's shapes (one plan runs them all)."""
    for cell in cells[1:]:
        for name, a, b in zip(names, cells[0], cell):
            if tuple(a.shape) != tuple(b.shape):
                raise ValueError(f"{name}: the cells of one launch need equal shapes, got {tuple(a.shape)} "
                                 f"and {tuple(b.shape)}")


def launch(dispatcher, sig, the_plan: Plan, names, args, stream=0):
    """Check the arguments against `sig`, compile `dispatcher` for it, check the compiled
    kernel fits the device as `the_plan` launches it (`persistent_plan.launch_blocker`: its
    real register count, the shared-memory opt-in above the default 48 KB, a cooperative
    grid's co-residency), launch. Raises `PersistentUnavailable` (the reason) where it cannot
    run here; bad arguments raise TypeError/ValueError. `stream`: a Numba stream (or 0); wrap
    a CuPy stream with `numba.cuda.external_stream(stream.ptr)`."""
    check_arrays(names, args, sig)
    if not SIMULATOR:
        _check_fits(dispatcher, sig, the_plan)
    args, written_back = _host_arrays_moved(args, stream)
    try:
        dispatcher[(the_plan.grid, the_plan.cells), the_plan.threads, stream, the_plan.smem](*args)
    except (CudaAPIError, CUDAError) as error:      # what the checks above did not foresee
        raise PersistentUnavailable(f"the driver refused the launch: {type(error).__name__}: {error}") from error
    for host, device in written_back:
        device.copy_to_host(host, stream=stream)


def _host_arrays_moved(args, stream):
    """`args` with each NumPy array copied to the device once (one passed for both cells of a
    launch must stay one array: Numba's own copies would be two, the second's copy-back
    overwriting the first's results), and the (host, device) pairs to copy back."""
    moved = {}
    for a in args:
        if isinstance(a, np.ndarray) and id(a) not in moved:
            moved[id(a)] = (a, cuda.to_device(a, stream=stream))
    return [moved[id(a)][1] if id(a) in moved else a for a in args], list(moved.values())


_fits: dict = {}    # (dispatcher, sig, plan, device id) -> why it cannot launch, or None: checked once


def _check_fits(dispatcher, sig, the_plan: Plan):
    """Compile, opt in to the plan's shared memory, and raise PersistentUnavailable when the
    compiled kernel cannot launch as planned on the current device. The answer is kept per
    kernel, plan and device (numba keeps a loaded kernel, and so its opt-in, per device): a
    launch after the first costs a dictionary lookup, not a driver call and an occupancy query."""
    key = (dispatcher, sig, the_plan, cuda.get_current_device().id)
    if key not in _fits:
        _fits[key] = _why_not(dispatcher, sig, the_plan)
    if _fits[key] is not None:
        raise PersistentUnavailable(_fits[key])


def _why_not(dispatcher, sig, the_plan: Plan):
    """Why the compiled kernel cannot launch as `the_plan` says on the current device, or None."""
    try:
        kernel = dispatcher.compile(sig)
    except Exception as error:   # e.g. the grid barrier's device-runtime library missing at link time
        return f"compiling the {the_plan.variant} kernel failed: {type(error).__name__}: {error}"
    optin_error = _opt_in(kernel, the_plan.smem) if the_plan.smem > DEFAULT_DYNAMIC_SMEM else None
    most = None
    if the_plan.variant == "coop" and optin_error is None:
        most = kernel.max_cooperative_grid_blocks(the_plan.threads, the_plan.smem)
    return launch_blocker(the_plan, regs_per_thread=kernel.regs_per_thread,
                          max_threads_per_block=kernel.max_threads_per_block, limits=device_limits(),
                          optin_error=optin_error, coop_grid_limit=most)


def _opt_in(kernel, smem):
    """Allow `kernel` `smem` bytes of dynamic shared memory; None when granted, else the
    driver's answer. numba-cuda's function handle is a CUkernel (library API, 0.2x+) or a
    CUfunction (older releases): each takes its own driver call."""
    from numba.cuda.cudadrv.driver import binding, driver

    cufunc = kernel._codelibrary.get_cufunc()
    attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    errors = []
    for call in (lambda: driver.cuKernelSetAttribute(attr, smem, cufunc.handle, cufunc.device.id),
                 lambda: driver.cuFuncSetAttribute(cufunc.handle, attr, smem)):
        try:
            call()
            return None
        except Exception as error:    # the other handle type, an older driver, or a refusal
            errors.append(f"{type(error).__name__}: {error}")
    return "; ".join(errors)


def make_coop_product(rows, pairs):
    """The cooperative variant's step product, for one block of COOP_THREADS threads owning
    W columns [g·C, (g+1)·C) (in shared memory at `woff`, stride C) and `rows` sequences from b0:

        xs[q, i] = src[b0 + q, i]                          (shared memory at `xoff`)
        red[ks, q, c] = Σ_{i in chunk ks} xs[q, i] · Wslice[i, c]   (at `roff`)

    thread (ks, c) = divmod(threadIdx.x, C) sums chunk ks = [ks·⌈d/KS⌉, …) of the inner
    dimension (rounded up to even, for `pairs`); `column_total` adds the KS partials."""
    matvec = make_matvec(rows, 0, pairs)
    C, KS = COOP_COLUMNS, COOP_THREADS // COOP_COLUMNS

    @inline
    def product(src, b0, sm, sm2, woff, xoff, roff, wreg, acc):
        B, d = src.shape
        tid = cuda.threadIdx.x
        for q in range(rows):
            b = b0 + q
            for i in range(tid, d, COOP_THREADS):
                sm[xoff + q * d + i] = src[b, i] if b < B else src.dtype.type(0)
        cuda.syncthreads()          # xs complete before any partial sum reads it
        ks, c = tid // C, tid % C
        chunk = 2 * ((d + 2 * KS - 1) // (2 * KS))
        for q in range(rows):
            acc[q] = 0
        matvec(sm, sm2, xoff, d, sm, woff + c, C, wreg, ks * chunk, min(d, ks * chunk + chunk), acc)
        for q in range(rows):
            sm[roff + (ks * rows + q) * C + c] = acc[q]
        cuda.syncthreads()          # every partial written before the owners add them up

    return product


@inline
def column_total(sm, roff, rows, q, c):
    """Σ_ks red[ks, q, c]: the full inner product of sequence q with column c."""
    total = sm[roff + q * COOP_COLUMNS + c]
    for ks in range(1, COOP_THREADS // COOP_COLUMNS):
        total += sm[roff + (ks * rows + q) * COOP_COLUMNS + c]
    return total
