"""Zip archives, read and written with MIS's safety rules, and with no HTTP meaning.

The reader (`reader.py`, with `layout.py`, `index.py`, `unpack.py`, `folders.py` and
`unpack_processes.py`) unpacks an uploaded archive after checking it; the writer
(`writer.py`, with `walk.py`, `budget.py`, `plan.py`, `steps.py`, `pipeline.py`,
`assembler.py`, `directory.py` and `records.py`) streams a folder as a zip. Both hold names
to one rule (`names.py`) and share the format's numbers (`constants.py`). What goes wrong is
one of `errors.py`'s exceptions, which the storage adapter turns into MIS's errors.
"""
