"""vatt: VATT-style self-supervised pretraining of video, audio and text transformers.

Importing the package has no side effects; import the submodules you need
(``vatt.models``, ``vatt.losses``, ``vatt.alignment``, ``vatt.evaluation``, ...).
"""

__version__ = "0.1.0"
