import pytest

# pytester runs pytest in-process and drops the modules a run imported afterwards; torch cannot be
# imported twice in one process, so it is imported once here, before any inner run. So are the
# heavy modules an inner run imports on first use (the gate's scipy.stats, the report's matplotlib):
# otherwise each run that gates or writes a report imports them again, seconds each.
import scipy.stats  # noqa: F401
import timm  # noqa: F401
import torch

try:
    import matplotlib

    matplotlib.use("Agg")  # as the report does
    import matplotlib.pyplot  # noqa: F401
except ImportError:  # optional: the report says how to install it
    pass

try:  # optional (the onnx extra): onnx's protobuf registry aborts the process (SIGABRT) when onnx is
    # imported a second time, which an inner run that exports a model (a variant, a remote board's
    # model) would otherwise do after pytester dropped it
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
except ImportError:
    pass

import pytest_e3p.run.session  # noqa: F401

pytest_plugins = ["pytester"]


@pytest.fixture
def sysfs_root(tmp_path, monkeypatch):
    """An empty fake sysfs root that the sysfs sensor backends read (E3P_SYSFS_ROOT)."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("E3P_SYSFS_ROOT", str(root))
    return root


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Torch on one thread in every test, whatever an earlier in-process run pinned: the tests check
    figures, not speed, and on a machine shared with other jobs a pool of spinning threads makes
    every forward call many times slower."""
    torch.set_num_threads(1)
