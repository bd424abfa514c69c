"""AlexNet Lab core: the AlexNet family, datasets, anatomy, training and runs.

Plain PyTorch and pandas; never imports streamlit. Every page, the CLI and the
tests call the same functions.
"""

__version__ = "0.1.0"
