"""tao_lab: granular video anomaly detection."""
__version__ = "0.1.0"
