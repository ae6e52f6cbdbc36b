"""The Textual jam screen (the only package under sjtui/ that imports textual).

Import :mod:`sjtui.ui.app` for :func:`~sjtui.ui.app.make_app` and
:func:`~sjtui.ui.app.run_app`; this package itself imports nothing heavy.
"""
