"""Visual planning: CEM and MPPI model-predictive control over any predictor of futures (the world model, the
real simulator as an oracle, a test's perfect model), goal-image and reward costs, a VP2-style predictor
interface, and the closed-loop runner behind ``ivideogpt plan``."""

from .costs import (
                    Cost,
                    CostTerm,
                    NegativeReward,
                    ObjectKeypoints,
                    PerceptualDistance,
                    PixelMSE,
                    goal_cost,
                    reduce_horizon,
)
from .planners import CEM, MPPI, CEMConfig, MPPIConfig, Planner, PlannerConfig, correlated_noise, make_planner
from .predictors import SimulatorPredictor, WorldModelPredictor
from .vp2 import VP2Predictor

__all__ = ["CEM", "MPPI", "CEMConfig", "MPPIConfig", "Planner", "PlannerConfig", "correlated_noise", "make_planner",
           "Cost", "CostTerm", "PixelMSE", "PerceptualDistance", "ObjectKeypoints", "NegativeReward", "goal_cost",
           "reduce_horizon",
           "WorldModelPredictor", "SimulatorPredictor", "VP2Predictor"]
