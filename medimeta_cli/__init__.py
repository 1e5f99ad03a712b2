"""medimeta-cli: command-line data manager for MedIMeta, the Medical Imaging Meta-Dataset."""

__version__ = "0.1.0"

__all__ = ["__version__"]
