"""Sender-side privacy transforms (``privacy.defense`` in a scenario): ``none``,
``dp_gaussian``, ``topk``, ``quantize``, all in ``transforms.py``."""
