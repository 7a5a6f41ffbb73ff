"""The example MAP (examples/dicom_stats): by itself, behind MIS, and on its test corpus."""

EXAMPLE_EXTRA = "the example MAP needs its extra: pip install .[example]"
