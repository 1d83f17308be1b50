"""HTML reports: one renderer per artifact type, each a self-contained static page.

``page`` holds what every page shares; ``statistics`` draws statistics and anomalies.
"""
