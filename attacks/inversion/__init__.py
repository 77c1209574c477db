"""Gradient inversion: curious peers rebuild a neighbour's training images from the
heads it sent.

====================  ==========================================
name                  module
====================  ==========================================
dlg                   attacks/inversion/dlg.py
inverting_gradients   attacks/inversion/inverting_gradients.py
gan_latent            attacks/inversion/gan_latent.py
gifd                  attacks/inversion/gifd.py
====================  ==========================================

Shared pieces: ``labels.py`` (label inference), ``analytic.py`` (feature recovery),
``matching.py`` (matching losses), ``generator.py`` (the GAN prior), ``base.py``
(replay of the victim's local training).
"""
