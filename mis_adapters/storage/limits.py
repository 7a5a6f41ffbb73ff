"""What a request's payload may be: the upload, what it unpacks to, and the MAP's output."""

from __future__ import annotations

import attrs

from mis_adapters.zip import ExtractLimits, OutputLimits


@attrs.frozen
class PayloadLimits:
    """The `server` settings of the same names (the upload's size is the edge's to limit, as
    the body arrives: every byte of it counts, not only the zip's)."""

    max_extracted_bytes: int
    max_entries: int
    max_compression_ratio: float
    max_output_bytes: int  # what the MAP's output files may add up to
    # What the output zip may list: entries, one path's bytes, the central directory's bytes.
    max_output_entries: int
    max_output_path_bytes: int
    max_output_directory_bytes: int

    def for_extraction(self) -> ExtractLimits:
        return ExtractLimits(
            max_extracted_bytes=self.max_extracted_bytes,
            max_entries=self.max_entries,
            max_compression_ratio=self.max_compression_ratio,
        )

    def for_output(self) -> OutputLimits:
        return OutputLimits(
            max_bytes=self.max_output_bytes,
            max_entries=self.max_output_entries,
            max_path_bytes=self.max_output_path_bytes,
            max_directory_bytes=self.max_output_directory_bytes,
        )
