"""Can this machine compile gpurnn's kernels and run them? The versions stage of profiling/gpu_check.sh.

    python3 profiling/gpu_probe.py --env FILE --blocked FILE

1. The CUDA toolkit. numba-cuda finds libNVVM through cuda-pathfinder (the NVIDIA wheels in
   site-packages, conda, CUDA_HOME) and otherwise only guesses from where nvrtc was found,
   which it refuses for an nvrtc from a wheel (torch's). So where CUDA_HOME is unset and
   cuda-pathfinder finds no libNVVM, CUDA_HOME becomes the first toolkit root holding libNVVM
   and libdevice: nvcc's, /usr/local/cuda, /usr/local/cuda-* (newest first), /opt/cuda; the
   `export CUDA_HOME=...` line goes to --env for every later stage.
2. Where Numba found NVVM and libdevice (numba.cuda.cuda_paths), as it will for every kernel.
3. One tiny kernel (tanh through libdevice) compiled for the GPU and run and checked there;
   without a GPU, compiled to PTX for sm_90.
4. The CUDA backend's own GPU probe, from the gpurnn tree that the later stages run.

--blocked gets why the GPU stages cannot run, in one line (kernels do not compile, a compiled
kernel does not run, or no usable GPU), or nothing when they can; the last line printed is `verdict: ...`.

GPU_CHECK_SIMULATE (comma-separated; the dry run, tests/test_gpu_check.py) pretends:
`nvvm-missing`: cuda-pathfinder finds no libNVVM and there is no toolkit root;
`gpu`: a usable GPU (the kernel is then only compiled, as without one).
"""
import argparse
import glob
import math
import os
import shutil
from pathlib import Path

SIMULATE = set(filter(None, os.environ.get("GPU_CHECK_SIMULATE", "").split(",")))
LIBDEVICE = Path("nvvm", "libdevice", "libdevice.10.bc")
LIBNVVM = ("nvvm/lib64/libnvvm.so*", "nvvm/lib/libnvvm.so*", "lib/libnvvm.so*", "lib64/libnvvm.so*")


def hide_nvvm():
    """GPU_CHECK_SIMULATE=nvvm-missing: cuda-pathfinder finds no libNVVM from here on."""
    from cuda import pathfinder

    load = pathfinder.load_nvidia_dynamic_lib

    def load_but_nvvm(name):
        if name == "nvvm":
            raise pathfinder.DynamicLibNotFoundError("libnvvm: not found (GPU_CHECK_SIMULATE=nvvm-missing)")
        return load(name)

    pathfinder.load_nvidia_dynamic_lib = load_but_nvvm
    for name in ("CUDA_HOME", "CUDA_PATH"):
        os.environ.pop(name, None)


def is_toolkit_root(root):
    """Whether `root` holds libdevice and a libNVVM."""
    return (root / LIBDEVICE).is_file() and any(glob.glob(str(root / pattern)) for pattern in LIBNVVM)


def system_roots():
    """Toolkit roots to try, best first: nvcc's, /usr/local/cuda, /usr/local/cuda-* newest first, /opt/cuda."""
    roots = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(Path(os.path.realpath(nvcc)).parent.parent)
    versions = glob.glob("/usr/local/cuda-*")
    versions.sort(key=lambda p: [int(x) if x.isdigit() else -1 for x in Path(p).name[5:].split(".")], reverse=True)
    return roots + [Path("/usr/local/cuda")] + [Path(p) for p in versions] + [Path("/opt/cuda")]


def find_toolkit():
    """(where NVVM will come from, the CUDA_HOME this probe set or None)."""
    for name in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(name):
            return f"{name}={os.environ[name]} as set", None
    try:
        from cuda import pathfinder

        found = pathfinder.load_nvidia_dynamic_lib("nvvm")
        return f"cuda-pathfinder ({found.found_via}): {found.abs_path}", None
    except Exception as error:       # not found, or no cuda-pathfinder (an older numba-cuda)
        missing = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    if "nvvm-missing" not in SIMULATE:
        for root in system_roots():
            if is_toolkit_root(root):
                os.environ["CUDA_HOME"] = str(root)
                return f"CUDA_HOME={root}, set here (cuda-pathfinder: {missing})", root
    return f"no toolkit root with libNVVM and libdevice (cuda-pathfinder: {missing})", None


def numba_paths():
    """Numba's own record of where NVVM and libdevice came from (numba-cuda's cuda_paths)."""
    try:
        from numba.cuda.cuda_paths import get_cuda_paths

        paths = get_cuda_paths()
        return {name: f"{paths[name].by}: {paths[name].info}" for name in ("nvvm", "libdevice") if name in paths}
    except Exception as error:
        return {"nvvm/libdevice": f"unknown ({type(error).__name__}: {' '.join(str(error).split())[:200]})"}


def tiny_kernel(on_gpu):
    """Compile one kernel calling libdevice (NVVM, libdevice) for sm_90, or the GPU's own
    compute capability; on a GPU run it and check it. (what was done, why the GPU stages cannot
    run or "")."""
    import numpy as np
    from numba import cuda

    def tanh_in_place(a):
        i = cuda.grid(1)
        if i < a.size:
            a[i] = math.tanh(a[i])

    cc = cuda.get_current_device().compute_capability if on_gpu else (9, 0)
    try:
        ptx, _ = cuda.compile_ptx(tanh_in_place, "void(float32[::1])", cc=cc)
        if "tanh" not in ptx:
            raise AssertionError("libdevice's tanh is missing from the PTX")
    except Exception as error:
        return "FAILED", f"kernels do not compile: {one_line(error)}"
    if not on_gpu:
        return f"compiled to PTX for sm_{cc[0]}{cc[1]} (no GPU to run it)", ""
    try:
        x = np.linspace(-3, 3, 1000, dtype=np.float32)
        a = cuda.to_device(x)
        cuda.jit("void(float32[::1])")(tanh_in_place)[4, 256](a)
        err = float(np.max(np.abs(a.copy_to_host() - np.tanh(x))))
        if not err < 1e-6:
            raise AssertionError(f"tanh off by {err:.1e}")
    except Exception as error:
        return "compiled, FAILED on the GPU", f"a compiled kernel does not run: {one_line(error)}"
    return f"compiled for sm_{cc[0]}{cc[1]} and ran on the GPU, max error {err:.1e}", ""


def gpu_usable():
    """(the backend sees a real GPU, where gpurnn was imported from)."""
    import gpurnn
    from gpurnn.backends import cuda as backend

    where = Path(gpurnn.__file__).resolve().parent.parent
    return "gpu" in SIMULATE or backend.gpu_present(), where


def one_line(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def main(env_file, blocked_file):
    if "nvvm-missing" in SIMULATE:
        hide_nvvm()
    nvvm_from, home = find_toolkit()
    print(f"toolkit: {nvvm_from}", flush=True)
    Path(env_file).write_text(f"export CUDA_HOME={home}\n" if home else "")
    try:
        on_gpu, tree = gpu_usable()
        print(f"gpurnn from {tree}; CUDA backend sees a real GPU: {on_gpu}", flush=True)
    except Exception as error:
        on_gpu = False
        print(f"gpurnn: the CUDA backend's probe failed: {one_line(error)}", flush=True)
    did, blocked = tiny_kernel(on_gpu and "gpu" not in SIMULATE)
    print(f"tiny kernel: {did}{': ' + blocked if blocked else ''}", flush=True)
    for name, where in numba_paths().items():
        print(f"{name}: {where}", flush=True)
    if not blocked and not on_gpu:
        blocked = "no usable GPU (see versions.log)"
    Path(blocked_file).write_text(blocked)
    print(f"verdict: {blocked + ': the GPU stages are skipped' if blocked else 'GPU usable, kernels compile and run'}",
          flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="write `export CUDA_HOME=...` here where this probe set it")
    parser.add_argument("--blocked", required=True, help="write why the GPU stages cannot run here (empty: they can)")
    args = parser.parse_args()
    main(args.env, args.blocked)
