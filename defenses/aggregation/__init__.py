"""Aggregation rules: how a peer merges its own head with the heads it received.

One module per rule or family (the table of names is in ``defenses/__init__.py``);
``common.py`` and ``loss_filters.py`` hold math shared by several rules.
"""
