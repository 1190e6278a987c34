"""ctp_tf: Catch-the-Patch self-supervised video representation learning in Keras 3 / TensorFlow."""

from setuptools import find_packages, setup

# apache-beam 2.77 needs protobuf < 7 and TensorFlow 2.21 accepts >= 6.31.1, < 8: together they
# resolve to protobuf 6.x (checked: pip install -e ".[test,beam]" && pip check).
BEAM = ["apache-beam>=2.77,<3", "protobuf>=6.31.1,<7"]

setup(
    name="ctp_tf",
    version="0.1.0",
    description="Catch-the-Patch (CtP) video representation learning with Keras 3 and TensorFlow",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    # configs/ and scripts/ stay top-level folders of the repository and ship inside the
    # package: `pip install .` gives `python -m ctp_tf.scripts.demo --tiny`, and
    # `--config=configs/x.py` finds the packaged copy by name (config_utils.find_config).
    packages=find_packages(include=["ctp_tf", "ctp_tf.*"]) + ["ctp_tf.configs", "ctp_tf.scripts"],
    package_dir={"ctp_tf.configs": "configs", "ctp_tf.scripts": "scripts"},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "numpy>=1.26,<3",
        "absl-py>=2.1,<3",
        "ml_collections>=1.0,<2",
        "av>=14,<19",
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        # h5py: tests open the .weights.h5 backups directly (keras depends on it too).
        # apache-beam: the Beam conversion tests run in CI (not skipped), so the test extra has it.
        # opencv: tests/test_benchmarks.py runs the numpy/OpenCV baseline pipeline.
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "jax[cpu]>=0.6,<0.11", "h5py>=3.10,<4",
                 "opencv-python-headless>=4.8,<6", *BEAM],
        # benchmarks/numpy_pipeline.py: the PyTorch release's kind of pipeline, for comparison.
        "bench": ["opencv-python-headless>=4.8,<6"],
        # scripts/make_tfrecords.py --beam_runner=...: conversion on Dataflow / Flink / Spark.
        "beam": BEAM,
    },
)
