"""LANIT: multi-domain image translation trained from unlabeled images and a list of domain words.

Modules: ``networks`` (StarGAN v2 generator, mapping network, style encoder, discriminator, EMA),
``prompts`` (CLIP loading, learnable prompt contexts), ``labels`` (adaptive-threshold pseudo-labels),
``losses``, ``data``, ``model`` (the :class:`~zerocon.training.TrainableMethod`), ``translate`` and ``cli``.
Nothing heavy is imported here.
"""
