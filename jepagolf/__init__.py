"""jepagolf: tiny language models with a span-masked I-JEPA + VICReg auxiliary objective."""

__version__ = "0.1.0"
