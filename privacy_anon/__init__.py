"""privacy-anon: learning to anonymize faces for privacy-preserving action detection.

Importing the package is light (no TensorFlow); submodules import what they need.
"""

__version__ = "0.1.0"
