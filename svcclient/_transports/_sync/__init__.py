"""svcclient's sync I/O, generated from :mod:`.._async` by ``scripts/unasync.py``.

Edit the async source, then run ``python scripts/unasync.py``; CI's ``--check`` fails when
a module here differs from what the script writes.
"""
