"""What pyproject.toml cannot say: the repository's top-level `layouts/` and `recordings/` ship inside the wheel
as the data packages explorer.bundled.layouts and explorer.bundled.recordings (see explorer/bundled)."""

from setuptools import find_namespace_packages, setup

DATA_DIRS = {"explorer.bundled.layouts": "layouts", "explorer.bundled.recordings": "recordings"}

setup(
    packages=find_namespace_packages(include=["explorer", "explorer.*", "probes", "probes.*"],
                                     exclude=["*.__pycache__"]) + list(DATA_DIRS),
    package_dir=DATA_DIRS,
    package_data={
        "": ["*.c", "*.h", "*.config", "*.sh"],  # the probes' BPF programs, the kernel lab's files
        "explorer.bundled.layouts": ["*.yaml"],
        "explorer.bundled.recordings": ["*.pasidrec", "scenarios/*.yaml", "lab/*.pasidrec"],
    },
)
