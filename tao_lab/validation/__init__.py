"""Training-only validation: compare scorer settings on held-out training clips with planted anomalies."""
from tao_lab.validation.planted import PlantedClip, PlantSpec, cut_walker, make_box, plant
from tao_lab.validation.protocol import DEFAULT_PLANTS, ValidationResult, planted_clips, validate

__all__ = ["PlantSpec", "PlantedClip", "plant", "cut_walker", "make_box", "DEFAULT_PLANTS", "ValidationResult",
           "planted_clips", "validate"]
