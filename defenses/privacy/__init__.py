"""Sender-side privacy transforms (``privacy.defense`` in a scenario): ``none``,
``dp_gaussian``, ``topk``, ``quantize`` in ``transforms.py``; ``adaptive_quantize``
(layer-adaptive mixed precision) in ``adaptive.py``."""
