"""The web console's static assets (``static/``), served by :mod:`parley.http.ui` at ``/ui``.

Plain HTML, CSS and JavaScript with no build step (ADR-0017): what is in
``static/`` is exactly what the browser gets, and it ships inside the wheel
as package data.
"""
