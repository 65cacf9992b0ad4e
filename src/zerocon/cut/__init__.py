"""CUT, FastCUT and SinCUT: unpaired image-to-image translation with a GAN and PatchNCE.

Import the parts you need (``zerocon.cut.model``, ``zerocon.cut.translate``); nothing heavy runs here.
"""

from zerocon.cut.config import PRESETS, CUTConfig, preset

__all__ = ["PRESETS", "CUTConfig", "preset"]
