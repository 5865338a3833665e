"""Training-only validation: compare scorer settings on held-out training clips with planted anomalies.

``protocol``: the configured dataset with the speed/cart plants; ``cross_scene``: several scenes (Ped2, Ped2 seen
by simulated cameras, synthetic flat and with perspective) x planted behaviour sets, one table."""
from tao_lab.validation.behaviours import BEHAVIOURS, SceneStats, plant_behaviour
from tao_lab.validation.cross_scene import CrossSceneResult, build_scenes, cross_scene_validate
from tao_lab.validation.planted import PlantedClip, PlantSpec, cut_walker, make_box, plant
from tao_lab.validation.protocol import DEFAULT_PLANTS, ValidationResult, planted_clips, validate
from tao_lab.validation.scenes import DEFAULT_SCENES, SCENES, WARPS, WarpedClip, homography, warp_points

__all__ = ["PlantSpec", "PlantedClip", "plant", "cut_walker", "make_box", "DEFAULT_PLANTS", "ValidationResult",
           "planted_clips", "validate", "BEHAVIOURS", "SceneStats", "plant_behaviour", "CrossSceneResult",
           "build_scenes", "cross_scene_validate", "DEFAULT_SCENES", "SCENES", "WARPS", "WarpedClip", "homography",
           "warp_points"]
