"""HTML reports: one renderer per artifact type, each a self-contained static page.

``page`` holds what every page shares; ``statistics`` draws statistics and anomalies;
``notebook`` frames an artifact's page for Jupyter (``Artifact._repr_html_``).
"""
