"""Export of the trained modifier M to TFLite, and the deployable bundle.

Example:
    >>> from privacy_anon.export import export_bundle
    >>> report = export_bundle("runs/adv", "bundle", quantize="int8", representative="faces/")
"""

from privacy_anon.export.tflite import QUANTIZE_MODES, ExportReport, convert_modifier, export_bundle

__all__ = ["QUANTIZE_MODES", "ExportReport", "convert_modifier", "export_bundle"]
