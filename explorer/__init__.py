"""PASID Explorer: watch how a Linux host hands out and uses PCIe PASIDs."""

__version__ = "0.1.0"
