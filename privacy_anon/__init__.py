"""privacy-anon: learning to anonymize faces for privacy-preserving action detection.

Importing the package is light (no TensorFlow); submodules import what they need.
"""

__version__ = "0.1.0"

__all__ = ["Anonymizer", "__version__"]


def __getattr__(name):
    # Lazy, so `import privacy_anon` stays light (no OpenCV, no interpreter) until used.
    if name == "Anonymizer":
        from privacy_anon.runtime.pipeline import Anonymizer

        return Anonymizer
    raise AttributeError(f"module 'privacy_anon' has no attribute {name!r}")
