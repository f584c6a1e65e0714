"""The on-device runtime: bundle loading, the per-frame pipeline, video I/O.

Imports only numpy, OpenCV, PyAV and the LiteRT interpreter, never TensorFlow, so it installs
alone (`pip install privacy-anon`, the base install: no TensorFlow) on a Raspberry Pi or a laptop.

Example:
    >>> from privacy_anon.runtime import Anonymizer
    >>> Anonymizer("bundle/").anonymize_video("in.mp4", "out.mp4")
"""

from privacy_anon.runtime.bundle import Bundle, load_bundle
from privacy_anon.runtime.modifier import TFLiteModifier
from privacy_anon.runtime.pipeline import Anonymizer, FrameResult

__all__ = ["Anonymizer", "Bundle", "FrameResult", "TFLiteModifier", "load_bundle"]
