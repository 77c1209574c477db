"""Gradient inversion: curious peers rebuild a neighbour's training images from the
heads it sent.

====================  ==========================================
name                  module
====================  ==========================================
dlg                   attacks/inversion/dlg.py
idlg                  attacks/inversion/dlg.py
inverting_gradients   attacks/inversion/inverting_gradients.py
gan_latent            attacks/inversion/gan_latent.py
gifd                  attacks/inversion/gifd.py
feature_matching      attacks/inversion/feature_matching.py
decoder               attacks/inversion/feature_matching.py
retrieval             attacks/inversion/feature_matching.py
====================  ==========================================

Shared pieces: ``labels.py`` (label inference), ``analytic.py`` (feature recovery, used by
the feature-space attacks through ``victim_features.py``, which also searches a batch's
features and holds the top-k-aware matching), ``public_prior.py`` (public features, the
decoder, retrieval), ``matching.py`` (matching losses), ``generator.py`` (the GAN prior),
``base.py`` (replay of the victim's local training).
"""
