"""The web app (``zerocon ui``): Gradio page over the editor and the CUT / LANIT translators."""

from zerocon.ui.jobs import UIConfig

__all__ = ["UIConfig"]
