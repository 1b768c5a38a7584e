"""Pieces shared by the persistent recurrent kernels: σ/σ' on the device, the plan that picks
a variant by shape, the on-chip product both directions run, and the launch helper.

Two variants (see `persistent_forward` for the math and the integration note):

  block  one block per slice of `rows` sequences, W (or W^T) whole on chip: its first `rreg`
         rows in registers (thread j holds W[i, j], i < rreg), the others in shared memory;
         no grid barrier. Fits while (d − rreg)·d + 2·R·d elements fit the block's shared
         memory (R = rows · chains), i.e. float32 d ≤ 236 with rreg = 0, d ≤ 256 with rreg = 64.
  coop   a cooperative grid of column groups × batch groups: block (g, h) keeps W[:, g·C:(g+1)·C]
         (C = 32 columns) in shared memory and computes those columns for its `rows` sequences;
         the state crosses blocks through global memory, one grid-wide barrier per step.

`plan()` is a pure function of the shape and the device limits, so the backend, the tests and
the profiling scripts all see the same choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import config, cuda, float32, float64, int64, uint64
from numba.cuda import libdevice

from gpurnn import activations

SIMULATOR = bool(config.ENABLE_CUDASIM)

# Device functions inlined at the Numba IR level: a local array handed to a call that is not
# inlined lives in local memory, inlined it stays in registers; and, unlike a plain
# `cuda.jit(device=True)` function (kernels/device.py's σ, σ'), an inlined one compiles to PTX
# with `compile_ptx` on a machine without a GPU (a plain one asks the driver for the current
# device's compute capability), which the PTX / ptxas tests need.
inline = cuda.jit(device=True, inline="always")
sigma = inline(activations.sigma)
sigma_prime = inline(activations.sigma_prime_from_state)


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

COOP_COLUMNS = 32       # C: one warp of columns, so a warp's W loads are one contiguous row piece
COOP_THREADS = 256      # C × KS threads: KS = 8 warps split the inner dimension i
COOP_REGS = 255         # registers per thread ptxas gives the cooperative kernels (up to 255)
MAX_ACC = 16            # register accumulators per thread (rows × chains) before spilling risk
REG_OPTIONS = tuple(range(0, 129, 16))  # W rows the block variant may hold in registers
UNROLL_LIMIT = 256       # rreg · rows · chains: larger register loops are not fully unrolled
                         # by NVVM, and W's register copy then lives in local memory
PAIRS_UNROLL_LIMIT = 64  # the same with paired state loads (ptxas: 64·1 → 112 registers,
                         # 128·1 → 255 and spills)
DEFAULT_SMEM_CARVE = 1024  # bytes the runtime reserves per block on sm_80+ (not usable)


@dataclass(frozen=True)
class Limits:
    """What a device offers a kernel. Defaults: an H100 SXM (cc 9.0)."""

    smem_per_block: int = 232448   # 227 KB opt-in dynamic shared memory per block
    smem_per_sm: int = 233472      # 228 KB per multiprocessor
    sm_count: int = 132
    regs_per_sm: int = 65536


H100 = Limits()


def device_limits() -> Limits:
    """The current device's limits (H100 defaults under the simulator)."""
    if SIMULATOR:
        return H100
    dev = cuda.get_current_device()
    return Limits(smem_per_block=dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                  smem_per_sm=dev.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
                  sm_count=dev.MULTIPROCESSOR_COUNT,
                  regs_per_sm=dev.MAX_REGISTERS_PER_MULTIPROCESSOR)


@dataclass(frozen=True)
class Plan:
    """How one persistent launch runs. variant: "block" | "coop" | "step" (not applicable:
    use the step-by-step kernels, `reason` says why). rows: sequences per block; chains:
    live gradient chains (1 forward and exact backward, τ+1 truncated); rreg: W rows in
    registers; cols: W columns per block; ksplit: threads sharing one column's sum; pairs:
    the state is read from shared memory two float32 at a time (8-byte broadcasts), which
    halves the state loads of the product (float32 with even d only; `plan` takes it for the
    cooperative variant, where those loads dominate; the block variant's W in registers
    needs the registers more)."""

    variant: str
    reason: str
    rows: int = 1
    chains: int = 1
    rreg: int = 0
    cols: int = 0
    ksplit: int = 1
    grid: int = 0
    threads: int = 0
    smem: int = 0
    pairs: bool = False


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def block_smem(d, rreg, rows, chains, isz):
    """Bytes of shared memory of the block variant: W rows [rreg, d), two buffers of rows·chains·d."""
    return ((d - min(rreg, d)) * d + 2 * rows * chains * d) * isz


def coop_smem(d, rows, isz):
    """Bytes of shared memory of the cooperative variant: W[:, C columns], xs (rows·d), partials."""
    return (d * COOP_COLUMNS + rows * d + (COOP_THREADS // COOP_COLUMNS) * rows * COOP_COLUMNS) * isz


def pairs_possible(d, dtype) -> bool:
    """Paired state loads need float32 and an even d (8-byte aligned rows)."""
    return np.dtype(dtype) == np.float32 and d % 2 == 0


def custom_plan(variant, B, d, dtype, *, rows, rreg=0, chains=1, pairs=False, reason="chosen by hand"):
    """A plan with the given `rows` (and `rreg`, `chains` for "block", `pairs`), its grid,
    threads and shared memory computed; for tests and experiments (no check that it fits a
    device: with pairs, keep rreg·rows·chains ≤ PAIRS_UNROLL_LIMIT)."""
    isz = np.dtype(dtype).itemsize
    if pairs and not pairs_possible(d, dtype):
        raise ValueError(f"pairs needs float32 and an even d, got {np.dtype(dtype)} and d = {d}")
    if variant == "block":
        return Plan("block", reason, rows=rows, chains=chains, rreg=rreg, cols=d, grid=math.ceil(B / rows),
                    threads=max(32, 32 * math.ceil(d / 32)), smem=block_smem(d, rreg, rows, chains, isz),
                    pairs=pairs)
    if variant == "coop":
        return Plan("coop", reason, rows=rows, cols=COOP_COLUMNS, ksplit=COOP_THREADS // COOP_COLUMNS,
                    grid=math.ceil(d / COOP_COLUMNS) * math.ceil(B / rows), threads=COOP_THREADS,
                    smem=coop_smem(d, rows, isz), pairs=pairs)
    raise ValueError(f"variant must be 'block' or 'coop', got {variant!r}")


def _block_plan(B, d, dtype, chains, limits):
    threads = max(32, 32 * math.ceil(d / 32))
    rows = min(_pow2_at_least(math.ceil(B / limits.sm_count)), MAX_ACC // chains)
    isz = np.dtype(dtype).itemsize
    while rows >= 1:
        for rreg in sorted(REG_OPTIONS, reverse=True):   # more W in registers: less smem traffic
            acc = rows * chains
            regs = (rreg + 2 * acc) * (isz // 4) + 64     # W rows, accumulators, addressing
            if (rreg <= d and rreg * acc <= UNROLL_LIMIT
                    and block_smem(d, rreg, rows, chains, isz) <= limits.smem_per_block
                    and regs <= min(255, limits.regs_per_sm // threads)):
                return custom_plan("block", B, d, dtype, rows=rows, rreg=rreg, chains=chains,
                                   reason=f"W on chip: {rreg} rows in registers, the rest in shared memory")
        rows //= 2
    return None


def _coop_plan(B, d, dtype, limits):
    groups = math.ceil(d / COOP_COLUMNS)
    for rows in (1, 2, 4, 8):
        smem = coop_smem(d, rows, np.dtype(dtype).itemsize)
        if smem > limits.smem_per_block:
            return None
        per_sm = min(limits.smem_per_sm // (smem + DEFAULT_SMEM_CARVE),
                     limits.regs_per_sm // (COOP_THREADS * COOP_REGS))
        if groups * math.ceil(B / rows) <= per_sm * limits.sm_count:
            return custom_plan("coop", B, d, dtype, rows=rows, pairs=pairs_possible(d, dtype),
                               reason=f"W split over {groups} column groups, one grid barrier per step")
    return None


def plan(B, d, dtype, *, direction="forward", truncate=None, limits=H100, force=None) -> Plan:
    """The persistent variant for a (B, d) recurrence in `dtype` ("forward" or "backward";
    `truncate` τ for truncated backward). `force` "block" | "coop" picks one (a "step" plan
    with the reason when it cannot run); None takes block when W fits one block, else coop."""
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    if force not in (None, "block", "coop"):
        raise ValueError(f"force must be None, 'block' or 'coop', got {force!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    if d > 1024:
        return Plan("step", f"d = {d} > 1024 threads per block")
    chains = 1 if (direction == "forward" or truncate is None) else truncate + 1
    if chains > MAX_ACC:
        return Plan("step", f"truncation τ = {truncate} keeps {chains} chains > {MAX_ACC} registers")
    block = _block_plan(B, d, dtype, chains, limits) if force != "coop" else None
    if block is not None:
        return block
    if force == "block":
        return Plan("step", f"W ({d}x{d} {np.dtype(dtype)}) does not fit one block's registers + shared memory")
    if chains > 1:
        return Plan("step", "truncated backward has no cooperative variant (the chains would cross blocks)")
    coop = _coop_plan(B, d, dtype, limits)
    if coop is not None:
        return coop
    return Plan("step", f"B = {B}, d = {d}: more blocks than one cooperative grid holds")


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


def numba_float(dtype):
    """The Numba type of a float32 / float64 NumPy dtype."""
    return float64 if np.dtype(dtype) == np.float64 else float32


def arrays(dtype):
    """Numba array types (1-D, 2-D, 3-D C-contiguous) of `dtype`, and the lengths type."""
    f = numba_float(dtype)
    return f[::1], f[:, ::1], f[:, :, ::1], int64[::1]


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


def launch(dispatcher, sig, the_plan: Plan, names, args, stream=0):
    """Check the arguments against `sig`, compile `dispatcher` for it, allow it `the_plan.smem`
    bytes of dynamic shared memory (above the default 48 KB a kernel must opt in), check a
    cooperative grid fits the device, launch. `stream`: a Numba stream (or 0); wrap a CuPy
    stream with `numba.cuda.external_stream(stream.ptr)`."""
    check_arrays(names, args, sig)
    if not SIMULATOR:
        from numba.cuda.cudadrv.driver import binding, driver

        kernel = dispatcher.compile(sig)
        cufunc = kernel._codelibrary.get_cufunc()
        attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        driver.cuKernelSetAttribute(attr, the_plan.smem, cufunc.handle, cufunc.device.id)
        if the_plan.variant == "coop":
            most = kernel.max_cooperative_grid_blocks(the_plan.threads, the_plan.smem)
            if the_plan.grid > most:
                raise ValueError(f"cooperative grid of {the_plan.grid} blocks exceeds the device's "
                                 f"{most} (plan: {the_plan})")
    dispatcher[the_plan.grid, the_plan.threads, stream, the_plan.smem](*args)


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
