"""The ``tusk`` command line: pachctl-style verb-noun commands over :class:`tusk.Client`.

Only click is imported at import time; the SDK and rich are imported inside commands so that
``tusk --help`` stays fast.
"""
