"""Build of the C extension lichen._lichen (the rest is in pyproject.toml).

LICHEN_SANITIZE=1 builds it with AddressSanitizer and UBSan for the test
suite's sanitizer run; LICHEN_DEBUG=1 builds without optimisation."""
import glob
import os

from setuptools import Extension, setup


def greenlet_include():
    import greenlet

    return os.path.dirname(greenlet.__file__)


cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-pthread"]
ldflags = ["-pthread"]
if os.environ.get("LICHEN_SANITIZE"):
    # No redzones around stack variables: greenlet saves a suspended
    # greenlet's stack with memcpy, which reads the redzones of our live
    # frames when the application switches greenlets itself (as gevent
    # does). Heap and global checks stay; the C unit tests and the fuzzers
    # check the pure C layer's stack use with full ASan.
    cflags += ["--param", "asan-stack=0"]
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
               "-fno-sanitize-recover=undefined"]
    ldflags += ["-fsanitize=address,undefined"]
elif os.environ.get("LICHEN_DEBUG"):
    cflags += ["-O0", "-g"]
else:
    cflags += ["-O2"]

setup(
    ext_modules=[
        Extension(
            "lichen._lichen",
            sources=sorted(glob.glob("csrc/*.c")),
            depends=sorted(glob.glob("csrc/*.h")),
            include_dirs=["csrc", greenlet_include()],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            libraries=["z", "ssl", "crypto"],
        )
    ]
)
