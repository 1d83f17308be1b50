"""The ``conveyor`` command. Imports stay inside commands so that ``--help`` starts fast."""
