"""ssdq: reproduce Intel's int8 results for GluonCV SSD-VGG16 on Xeon CPUs."""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def pins():
    """name -> exact version, from constraints.txt (the one place versions are written)."""
    found = {}
    for line in (HERE / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[name.lower()] = version
    return found


PINS = pins()
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "ssdq" / "__init__.py").read_text(),
                    re.M).group(1)
RUNTIME = ["mxnet", "numpy", "gluoncv", "pycocotools", "opencv-python", "psutil",
           "threadpoolctl", "tqdm", "matplotlib"]
RUNTIMES = ["onnx", "onnxruntime", "openvino"]  # ssdq export onnx, --backend onnxruntime/openvino

setup(
    name="ssdq",
    version=VERSION,
    description=__doc__,
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires="==3.11.*",
    packages=find_packages(include=["ssdq", "ssdq.*"]),
    # the shipped weights, their cards and training logs (ssdq.model.weights finds them)
    package_data={"ssdq.model": ["weights/*.params", "weights/*.json", "weights/*.jsonl"]},
    include_package_data=False,  # package_data above is the whole list; MANIFEST.in: the sdist
    zip_safe=False,  # MXNet loads the weights by file name
    install_requires=["%s==%s" % (name, PINS[name]) for name in RUNTIME],
    extras_require={
        "runtimes": ["%s==%s" % (name, PINS[name]) for name in RUNTIMES],
        "ray": ["ray==%s" % PINS["ray"]],
        # CI runs the runtimes' and Ray's tests too
        "test": ["%s==%s" % (name, PINS[name]) for name in ("pytest", "pytest-xdist", "ruff", "ray")]
                + ["%s==%s" % (name, PINS[name]) for name in RUNTIMES],
    },
    entry_points={"console_scripts": ["ssdq=ssdq.cli.main:main"]},
)
